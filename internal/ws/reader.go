package ws

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// readBufferSize is the size of the pooled buffers reads go into: one full
// TLS record, so one tls.Conn.Read can return a whole record.
const readBufferSize = 16 << 10

// maxReadsPerWakeup bounds how long one goroutine keeps reading a plain
// socket that keeps receiving; the epoll re-arm (level-triggered) brings it
// back at once, behind the other ready connections.
const maxReadsPerWakeup = 16

var readBuffers = sync.Pool{New: func() any {
	b := make([]byte, readBufferSize)
	return &b
}}

// serveReads runs in a goroutine that holds the read token (epoll mode): the
// first for a connection calls OnOpen and feeds the bytes net/http had
// buffered; every one then reads whatever is available without blocking,
// and finally re-arms the connection or tears it down.
func (c *Conn) serveReads() {
	defer c.engine.wg.Done()
	// A fresh plain connection skips its first read: the bytes that came
	// with the upgrade request are fed by open, and a read now would almost
	// always only say "would block". Arming epoll reports at once whatever
	// arrived meanwhile (EPOLL_CTL_ADD and _MOD check readiness). Not under
	// TLS: the TLS layer may hold records epoll cannot see.
	fresh := !c.opened && c.mode == readRawFD && c.state.Load()&stFinalizeRequested == 0
	c.open()
	ok := fresh || c.drain()
	if !c.releaseRead() {
		c.finalize()
		return
	}
	if ok {
		var err error
		if c.polled.Load() {
			err = c.engine.poller.arm(c.rc, c.id)
		} else {
			// The first round: the connection joins the epoll set now,
			// armed. A tear-down racing this may miss the registration;
			// closing the socket removes it then.
			c.polled.Store(true)
			err = c.engine.poller.addArmed(c.rc, c.id)
		}
		if err != nil {
			// Fails once the socket is closed, i.e. being torn down (or,
			// for the first registration, when the kernel refuses it).
			c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: fmt.Errorf("%w: %w", ErrPeerClosed, err)})
		}
	}
}

// open calls OnOpen and feeds the pre-upgrade bytes, the first time only.
func (c *Conn) open() {
	if c.opened {
		return
	}
	c.opened = true
	c.handler.OnOpen(c)
	c.releaseWrites()
	if len(c.buffered) > 0 {
		c.consume(c.buffered)
	}
	c.buffered = nil
}

// drain reads until the connection would block (true: re-arm) or must be
// torn down (false). Under TLS it keeps reading until the TLS layer itself
// reports would-block: a tls.Conn may hold whole records that it already
// took from the socket, which epoll cannot see.
func (c *Conn) drain() bool {
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	buf := *bp
	for reads := 0; ; reads++ {
		if c.state.Load()&stFinalizeRequested != 0 {
			return false
		}
		var n int
		var err error
		if c.mode == readTLS {
			n, err = c.tlsConn.Read(buf)
		} else {
			if reads == maxReadsPerWakeup {
				return true
			}
			n, err = rawRead(c.rc, buf)
		}
		if n > 0 {
			c.consume(buf[:n])
		}
		switch {
		case err == nil:
			if c.mode == readRawFD && n < len(buf) {
				return true // the socket is drained; epoll says when there is more
			}
		case isWouldBlock(err):
			return true
		default:
			c.readFailed(err)
			return false
		}
	}
}

func isWouldBlock(err error) bool {
	var wb wouldBlockError
	return errors.As(err, &wb)
}

// serveBlocking is the portable read path: one goroutine per connection,
// holding the read token for the connection's whole life, blocked in Read
// while idle. A tear-down request interrupts the Read with a past deadline.
func (c *Conn) serveBlocking() {
	defer c.engine.wg.Done()
	c.open()
	buf := make([]byte, 4096)
	for c.state.Load()&stFinalizeRequested == 0 {
		n, err := c.conn.Read(buf)
		if n > 0 {
			c.consume(buf[:n])
		}
		if err != nil {
			if c.state.Load()&stFinalizeRequested != 0 {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // a stale wake-up deadline; nothing was lost
			}
			c.readFailed(err)
			break
		}
	}
	c.requestFinalize(nil) // we hold the token: this only marks the request
	c.finalize()
}

// readFailed handles the end of the input: EOF or a read error.
func (c *Conn) readFailed(err error) {
	if errors.Is(err, io.EOF) {
		c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: ErrPeerClosed})
		return
	}
	c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: fmt.Errorf("%w: %w", ErrPeerClosed, err)})
}

// consume feeds received bytes to the parser (which unmasks them in place)
// and keeps the timestamps the sweeper works from.
func (c *Conn) consume(b []byte) {
	c.bytesIn.Add(uint64(len(b)))
	p := c.parser
	if p == nil {
		p = parsers.Get().(*parser)
		p.maxMessage = c.engine.cfg.MaxMessageSize
		c.parser = p
	}
	frames, units := p.frames, p.units
	perr := p.feed(b, c)
	now := time.Now().UnixNano()
	if p.frames != frames {
		c.lastFrameAt.Store(now)
	}
	switch {
	case !p.partial():
		if c.partialSince.Load() != 0 {
			c.partialSince.Store(0)
		}
	case p.units != units || c.partialSince.Load() == 0:
		// A new message or frame began in this chunk.
		c.partialSince.Store(now)
	}
	if perr != nil && !c.protoFailed {
		c.protoFailed = true
		c.partialSince.Store(0)
		c.initiateClose(&CloseError{Code: perr.code, Reason: perr.reason, Err: ErrProtocol})
	}
	c.releaseParser(false)
}

// parsers holds parser state for connections between messages: an idle
// connection has none of its own.
var parsers = sync.Pool{New: func() any { return new(parser) }}

// releaseParser returns the parser to the pool when it holds nothing (or,
// with force, always): no partial frame or message, no sticky error or
// close. The read token holder calls it.
func (c *Conn) releaseParser(force bool) {
	p := c.parser
	if p == nil || (!force && (p.partial() || p.err != nil || p.closed)) {
		return
	}
	p.release()
	*p = parser{}
	parsers.Put(p)
	c.parser = nil
}

// onMessage implements parserSink.
func (c *Conn) onMessage(text bool, payload []byte) {
	if c.closing.Load() {
		return
	}
	c.msgsIn.Add(1)
	c.handler.OnMessage(c, text, payload)
}

// onPing implements parserSink: answer with a pong carrying the same
// payload. Only the latest unanswered ping is answered (RFC 6455 §5.5.3
// allows it), so a peer that pings without reading cannot grow our memory.
func (c *Conn) onPing(payload []byte) {
	if c.control(OpPing) {
		return
	}
	c.mu.Lock()
	if c.closeQueued {
		c.mu.Unlock()
		return
	}
	c.pong = AppendFrame(make([]byte, 0, 2+len(payload)), OpPong, true, payload)
	start := c.startWriterLocked()
	c.mu.Unlock()
	c.startWriter(start)
}

// onPong implements parserSink; receiving it already counts as activity.
// It also answers an outstanding stall probe: the peer has read everything
// written before our latest ping.
func (c *Conn) onPong([]byte) {
	c.probeBase.Store(c.bytesOut.Load())
	c.probeAt.Store(0)
	c.control(OpPong)
}

// control shows a ping to the handler, if it wants to see it,
// and reports whether the connection is closing (the frame is ignored).
func (c *Conn) control(op Opcode) (closing bool) {
	if c.closing.Load() {
		return true
	}
	if ch, ok := c.handler.(ControlHandler); ok {
		ch.OnControl(c, op)
	}
	return c.closing.Load()
}

// onClose implements parserSink: the peer's close frame. If we had already
// sent ours the handshake is complete; otherwise echo the peer's code.
func (c *Conn) onClose(code int, reason string) {
	c.mu.Lock()
	c.peerClosed = true
	written := c.closeWritten
	c.mu.Unlock()
	if written {
		c.requestFinalize(nil)
		return
	}
	c.initiateClose(&CloseError{Code: code, Reason: reason, Remote: true, Err: ErrPeerClosed})
}

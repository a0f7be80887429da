package ws

import (
	"fmt"
	"sync"
	"time"
)

// pingFrame is the keepalive ping: empty payload, shared by every
// connection.
var pingFrame = []byte{0x80 | byte(OpPing), 0}

// writeBufferSize is the size of the buffer frames are copied into under
// TLS: one full TLS record.
const writeBufferSize = 16 << 10

var writeBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBufferSize)
	return &b
}}

// enqueue adds a frame to the outbound queue unless that would take the
// queue over its bounds; it gets the connection written if it is not yet.
func (c *Conn) enqueue(frame []byte) error {
	cfg := &c.engine.cfg
	c.mu.Lock()
	if c.closeQueued {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(frame) > cfg.MaxQueueBytes {
		c.mu.Unlock()
		return ErrMessageTooLarge
	}
	if c.queuedMsgs.Load()+1 > int64(cfg.MaxQueueMessages) || c.queuedBytes.Load()+int64(len(frame)) > int64(cfg.MaxQueueBytes) {
		c.mu.Unlock()
		return ErrQueueFull
	}
	if c.queue == nil {
		c.queue = queueArrays.Get().(*[queueArrayLen][]byte)[:0]
	}
	c.queue = append(c.queue, frame)
	c.queuedMsgs.Add(1)
	c.queuedBytes.Add(int64(len(frame)))
	start := c.startWriterLocked()
	c.mu.Unlock()
	c.startWriter(start)
	return nil
}

// How a connection with nothing being written gets written.
type writerStart uint8

const (
	startNone      writerStart = iota // being written already (or torn down)
	startFlusher                      // join a flusher's ready list
	startGoroutine                    // start a writer goroutine
)

// startWriterLocked marks the connection as being written, unless it is,
// and says how to get it written (startWriter, after unlocking). A writer
// goroutine is counted in the Engine's WaitGroup here, while c.mu is held,
// so that it cannot race with a tear-down.
func (c *Conn) startWriterLocked() writerStart {
	if c.writing || c.finalized || c.holdWrites {
		return startNone
	}
	c.writing = true
	if c.flushable() && c.closeFrame == nil {
		return startFlusher
	}
	c.engine.wg.Add(1)
	return startGoroutine
}

// flushable reports whether flushers write the connection: a plain socket
// served through epoll (see flush.go).
func (c *Conn) flushable() bool {
	return c.tlsConn == nil && c.mode == readRawFD && len(c.engine.flushers) > 0
}

// startWriter acts on startWriterLocked's answer.
func (c *Conn) startWriter(s writerStart) {
	switch s {
	case startFlusher:
		c.flusher().push(c)
	case startGoroutine:
		go c.writeLoop(nil)
	}
}

// releaseWrites ends the hold of AdoptUpgraded once OnOpen returned: the
// 101 response and whatever OnOpen queued are written together. A plain
// epoll connection is written right here, without blocking (a flusher's
// turn, taken on this goroutine instead of waking one); anything else gets
// its writer goroutine as usual.
func (c *Conn) releaseWrites() {
	c.mu.Lock()
	if !c.holdWrites {
		c.mu.Unlock()
		return
	}
	c.holdWrites = false
	start := startNone
	if c.pendingLocked() {
		start = c.startWriterLocked()
	}
	c.mu.Unlock()
	if start == startFlusher {
		var bufs [4][]byte
		c.flusher().flushOnce(c, bufs[:0])
		return
	}
	c.startWriter(start)
}

// queueArrays recycles queue arrays. An idle connection keeps no queue
// array (idle memory per connection), so every burst used to grow a new one
// (1, 2, 4, 8, 16 entries): half of the bytes a fan-out allocated. A
// connection now takes one of 16 entries when its first frame is queued and
// gives it back when it goes idle; a queue that outgrew it grows as before.
const queueArrayLen = 16

var queueArrays = sync.Pool{New: func() any { return new([queueArrayLen][]byte) }}

// releaseQueueLocked drops the queue's array: an idle connection keeps none.
// An array of queueArrayLen entries goes back to queueArrays (the queue is
// its only user: takers copy the frames out).
func (c *Conn) releaseQueueLocked() {
	if cap(c.queue) == queueArrayLen {
		a := (*[queueArrayLen][]byte)(c.queue[:queueArrayLen])
		clear(a[:])
		queueArrays.Put(a)
	}
	c.queue = nil
}

// dropQueueLocked discards the frames not yet taken by the writer.
func (c *Conn) dropQueueLocked() {
	var bytes int64
	for _, f := range c.queue {
		bytes += int64(len(f))
	}
	c.queuedBytes.Add(-bytes)
	c.queuedMsgs.Add(-int64(len(c.queue)))
	clear(c.queue)
	c.releaseQueueLocked()
}

// queuePing asks the writer for a ping (the sweeper's keepalive).
func (c *Conn) queuePing() {
	c.mu.Lock()
	if c.closeQueued {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	start := c.startWriterLocked()
	c.mu.Unlock()
	c.startWriter(start)
}

// writeLoop is a connection's writer goroutine. It exists only while there
// is something to write: it writes first (if not nil, handed over by a
// flusher whose non-blocking write could not finish it), then takes
// everything queued as one batch (pong and ping first), writes it with a
// deadline, and exits when the queue is empty, so an idle connection holds
// neither a goroutine nor a buffer. After writing our close frame it exits
// for good. TLS connections, the blocking read mode and close frames are
// always written here; plain epoll connections only while their socket is
// full (flush.go).
func (c *Conn) writeLoop(first *outBatch) {
	defer c.engine.wg.Done()
	var b outBatch
	if first != nil {
		b = *first
	}
	for {
		if first == nil {
			c.mu.Lock()
			if c.finalized {
				c.writing = false
				c.mu.Unlock()
				return
			}
			c.takeLocked(&b)
			if len(b.bufs) == 0 {
				c.writing = false
				c.releaseQueueLocked()
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
		}
		first = nil

		c.writeSince.Store(time.Now().UnixNano())
		err := c.writeBatch(&b)
		c.writeSince.Store(0)
		c.engine.writes.Add(1)
		clear(b.bufs[:cap(b.bufs)])
		c.batchWritten(&b)
		if err != nil {
			c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: fmt.Errorf("%w: %w", ErrWrite, err)})
			c.stopWriting()
			return
		}
		c.msgsOut.Add(uint64(b.dataMsgs))
		if b.closing {
			c.stopWriting()
			c.closeFrameWritten()
			return
		}
	}
}

func (c *Conn) stopWriting() {
	c.mu.Lock()
	c.writing = false
	c.releaseQueueLocked()
	c.mu.Unlock()
}

// writeBatch writes frames with one deadline for the batch: writev for a
// plain socket, one buffer per TLS record's worth of frames under TLS (a
// tls.Conn would make a record, and a syscall, of every Write).
func (c *Conn) writeBatch(b *outBatch) error {
	batch := b.bufs
	now := time.Now()
	if b.closing || c.closing.Load() {
		// A close frame (or what precedes it) waits no longer than the
		// close handshake would.
		d := now.Add(min(c.engine.cfg.WriteTimeout, c.engine.cfg.CloseTimeout))
		if err := c.conn.SetWriteDeadline(d); err != nil {
			return err
		}
		c.writeDeadline = d
	} else if err := c.armWriteDeadline(now); err != nil {
		return err
	}
	if c.tlsConn == nil {
		n, err := batch.WriteTo(c.writeTo)
		b.countOut(c, int(n))
		return err
	}
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	buf := (*bp)[:0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		n, err := c.conn.Write(buf)
		b.countOut(c, n)
		buf = buf[:0]
		return err
	}
	for _, f := range batch {
		if len(buf)+len(f) > cap(buf) {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(f) >= cap(buf) {
			n, err := c.conn.Write(f)
			b.countOut(c, n)
			if err != nil {
				return err
			}
			continue
		}
		buf = append(buf, f...)
	}
	return flush()
}

// armWriteDeadline moves the socket's write deadline to now+WriteTimeout,
// but only once less than three quarters of the timeout remain: setting a
// deadline re-arms a runtime timer, which a connection receiving a steady
// stream of messages did for every batch (about 5 % of the server's CPU in
// a fan-out profile). A write may therefore block for between 3/4 of
// WriteTimeout and all of it before it fails.
func (c *Conn) armWriteDeadline(now time.Time) error {
	timeout := c.engine.cfg.WriteTimeout
	if c.writeDeadline.Sub(now) >= timeout-timeout/4 {
		return nil
	}
	d := now.Add(timeout)
	if err := c.conn.SetWriteDeadline(d); err != nil {
		return err
	}
	c.writeDeadline = d
	return nil
}

// closeFrameWritten runs after our close frame went out. If the peer's close
// frame already arrived the handshake is complete; otherwise half-close the
// socket, so that a peer waiting for the server to close TCP first (RFC 6455
// §7.1.1) sees EOF after our close frame, and wait (the reader finalizes on
// the peer's close frame or EOF, the sweeper after Config.CloseTimeout).
func (c *Conn) closeFrameWritten() {
	c.closeSentAt.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.closeWritten = true
	peerClosed := c.peerClosed
	c.mu.Unlock()
	if peerClosed {
		c.requestFinalize(nil)
		return
	}
	if cw, ok := c.sock.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

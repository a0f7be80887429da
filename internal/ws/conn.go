package ws

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler receives a connection's events. For one connection the calls never
// overlap and come in order: OnOpen once, then OnMessage any number of times,
// then OnClose exactly once. Different connections are served concurrently.
// The calls run on Engine goroutines (OnClose may also run inside
// Engine.Close); a call that blocks holds up that connection's reading only.
// One Handler value may serve every connection.
type Handler interface {
	// OnOpen is called before anything else; it may Send.
	OnOpen(c *Conn)
	// OnMessage receives a complete data message: text (valid UTF-8) or
	// binary. data is valid only during the call. It is not called once a
	// close has begun (CloseWith, a close frame from the peer, a protocol
	// error).
	OnMessage(c *Conn, text bool, data []byte)
	// OnClose reports that the connection is gone: the socket is closed
	// and nothing more will be sent or delivered. err is a *CloseError.
	OnClose(c *Conn, err error)
}

// ControlHandler is implemented by a Handler that wants to see the peer's
// pings, e.g. to count them toward a frame rate (each one costs a reply):
// a peer must not be able to flood with frames that never reach OnMessage.
// OnControl runs on the reading goroutine before the frame is acted on; it
// may close the connection.
type ControlHandler interface {
	OnControl(c *Conn, op Opcode)
}

// readMode is how the Engine reads a connection.
type readMode uint8

const (
	readRawFD    readMode = iota // plain socket: non-blocking read(2), epoll
	readTLS                      // *tls.Conn over a pollConn in non-blocking mode, epoll
	readBlocking                 // a goroutine per connection (portable fallback)
)

// Read-side ownership, in Conn.state. Exactly one goroutine at a time holds
// the read token: the goroutine handling an epoll event (or, in blocking
// mode, the connection's reader goroutine), or a goroutine tearing the
// connection down. Tear-down needs the token so that OnClose never overlaps
// OnMessage; whoever cannot get it sets stFinalizeRequested and leaves the
// tear-down to the holder.
const (
	stReadHeld uint32 = 1 << iota
	stFinalizeRequested
	stFinalized
)

// Conn is one WebSocket connection served by an Engine. Its methods are safe
// for concurrent use from any goroutine, handler callbacks included, and none
// of them blocks on the network.
type Conn struct {
	// Static after Serve.
	engine      *Engine
	id          uint64
	handler     Handler
	value       any
	conn        net.Conn        // what frames are written to (the *tls.Conn under TLS)
	sock        net.Conn        // the socket: closed and half-closed directly, without a TLS alert
	writeTo     net.Conn        // conn, unwrapped to the *net.TCPConn when plain, for writev
	rc          syscall.RawConn // the socket's descriptor; nil in blocking mode
	tlsConn     *tls.Conn
	pc          *pollConn // non-nil when accepted through WrapListener
	mode        readMode
	connectedAt int64

	// The socket's write deadline as last set; only the writer goroutine
	// (one at a time, handed over under mu) touches it.
	writeDeadline time.Time

	// Atomics, readable from any goroutine.
	state        atomic.Uint32 // stReadHeld | stFinalizeRequested | stFinalized
	closing      atomic.Bool   // a close began: further messages are dropped
	lastFrameAt  atomic.Int64  // unix ns of the last complete frame received
	partialSince atomic.Int64  // unix ns when the unfinished message/frame began; 0 if none
	closeSentAt  atomic.Int64  // unix ns our close frame was written; 0 before
	writeSince   atomic.Int64  // unix ns the writer's current socket write began; 0 when not writing
	probeAt      atomic.Int64  // unix ns a stall probe (ping) was queued; 0 when none is outstanding
	probeBase    atomic.Uint64 // bytesOut when the last probe was answered
	stalled      atomic.Bool   // closing as a stalled peer: its close reply is not waited for long
	polled       atomic.Bool   // registered in the Engine's epoll set (after the first read round)
	bytesIn      atomic.Uint64
	bytesOut     atomic.Uint64
	msgsIn       atomic.Uint64
	msgsOut      atomic.Uint64
	queuedBytes  atomic.Int64 // queued plus in flight; written under mu
	queuedMsgs   atomic.Int64 // likewise

	// Owned by the holder of the read token.
	parser      *parser // nil between messages: taken from a pool while needed
	buffered    []byte  // bytes read by net/http past the request, fed first
	opened      bool    // OnOpen was called
	protoFailed bool    // the parser failed and the close was initiated

	// Owned by the Engine's sweeper.
	nextPingAt int64

	// Guarded by mu: the outbound side.
	mu sync.Mutex
	// head is the 101 response not yet written (AdoptUpgraded): it goes
	// first. A pointer: every idle connection carries the field, and a
	// slice would move Conn up a size class (432 → 464 bytes, class 480).
	head         *[]byte
	queue        [][]byte // frames not yet taken by the writer
	writing      bool     // on a flusher's ready list or a writer goroutine running
	pingDue      bool
	pong         []byte // pong frame answering the latest ping; nil if none
	closeFrame   []byte // our close frame, until the writer takes it
	closeQueued  bool   // a close frame was queued: no more data is accepted
	closeWritten bool
	peerClosed   bool // the peer's close frame arrived
	finalized    bool
	holdWrites   bool        // nothing is written until OnOpen returned (AdoptUpgraded)
	reason       *CloseError // the first reason the connection is closing
}

// ID returns the connection's identifier, unique within its Engine.
func (c *Conn) ID() uint64 { return c.id }

// Value returns the value given to Engine.Serve.
func (c *Conn) Value() any { return c.value }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.sock.RemoteAddr() }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.sock.LocalAddr() }

// Stats is a snapshot of a connection's counters. Each field is read
// atomically, but the fields are not read together, so they may disagree
// slightly on a busy connection.
type Stats struct {
	ConnectedAt  time.Time
	LastReceived time.Time // the last complete frame of any kind
	BytesIn      uint64    // WebSocket bytes read (after TLS decryption)
	BytesOut     uint64    // WebSocket bytes written (before TLS encryption)
	MessagesIn   uint64    // data messages delivered to OnMessage
	MessagesOut  uint64    // data messages written to the socket
	QueuedBytes  int       // outbound bytes queued or being written
	QueuedMsgs   int       // outbound messages queued or being written
}

// Stats returns the connection's counters without taking a lock.
func (c *Conn) Stats() Stats {
	return Stats{
		ConnectedAt:  time.Unix(0, c.connectedAt),
		LastReceived: time.Unix(0, c.lastFrameAt.Load()),
		BytesIn:      c.bytesIn.Load(),
		BytesOut:     c.bytesOut.Load(),
		MessagesIn:   c.msgsIn.Load(),
		MessagesOut:  c.msgsOut.Load(),
		QueuedBytes:  int(c.queuedBytes.Load()),
		QueuedMsgs:   int(c.queuedMsgs.Load()),
	}
}

// SendText queues p as one text message (p must be valid UTF-8; it is not
// checked). It copies p. It returns ErrQueueFull when the queue is at its
// bound, ErrMessageTooLarge when the message could never fit, and ErrClosed
// once a close has begun; it never blocks and never closes the connection.
func (c *Conn) SendText(p []byte) error {
	return c.enqueue(AppendFrame(make([]byte, 0, frameSize(len(p))), OpText, true, p))
}

// SendBinary queues p as one binary message, like SendText.
func (c *Conn) SendBinary(p []byte) error {
	return c.enqueue(AppendFrame(make([]byte, 0, frameSize(len(p))), OpBinary, true, p))
}

// SendPrepared queues a prepared message without copying it, like SendText.
func (c *Conn) SendPrepared(pm *PreparedMessage) error {
	return c.enqueue(pm.frame)
}

// CloseWith starts the closing handshake with code and reason: it discards
// the messages still queued (not the one being written), queues a close
// frame that bypasses the queue bounds, and returns at once. The writer
// sends the close frame with the usual write deadline, then half-closes the
// socket and waits up to Config.CloseTimeout for the peer's close frame
// before closing it; OnClose follows with a *CloseError carrying code,
// reason and ErrLocalClose.
//
// A code ValidCloseCode rejects sends an empty close frame. The reason is
// cut to fit a control frame. It returns ErrClosed if a close had already
// begun (only the first call has an effect). It is safe to call concurrently
// and from handler callbacks.
func (c *Conn) CloseWith(code int, reason string) error {
	if !c.initiateClose(&CloseError{Code: code, Reason: reason, Err: ErrLocalClose}) {
		return ErrClosed
	}
	return nil
}

// initiateClose queues a close frame for ce (recording ce as the reason if
// none is yet) unless one is already queued; it reports whether it did.
func (c *Conn) initiateClose(ce *CloseError) bool {
	c.mu.Lock()
	if c.closeQueued {
		c.mu.Unlock()
		return false
	}
	c.closeQueued = true
	c.closing.Store(true)
	if c.reason == nil {
		c.reason = ce
	}
	c.dropQueueLocked()
	c.pong, c.pingDue = nil, false
	c.closeFrame = AppendClose(nil, ce.Code, ce.Reason)
	start := c.startWriterLocked()
	c.mu.Unlock()
	if start != startNone {
		c.startWriter(start)
	} else if c.engine.cfg.StallTimeout > 0 && c.writeSince.Load() != 0 {
		// A write is in progress, perhaps blocked on a peer that stopped
		// reading: the close frame must not wait WriteTimeout behind it
		// (unless stall detection is off: then WriteTimeout rules).
		_ = c.conn.SetWriteDeadline(time.Now().Add(c.engine.cfg.closeGrace()))
	}
	return true
}

// requestFinalize asks for the connection to be torn down, recording reason
// if it is the first. If the read token is free this goroutine takes it and
// tears down now; otherwise the holder does when it is done.
func (c *Conn) requestFinalize(reason *CloseError) {
	if reason != nil {
		c.mu.Lock()
		if c.reason == nil {
			c.reason = reason
		}
		c.mu.Unlock()
	}
	for {
		s := c.state.Load()
		if s&(stFinalized|stFinalizeRequested) != 0 {
			return
		}
		if s&stReadHeld != 0 {
			if c.state.CompareAndSwap(s, s|stFinalizeRequested) {
				c.wakeReader()
				return
			}
			continue
		}
		if c.state.CompareAndSwap(s, s|stReadHeld|stFinalizeRequested) {
			c.finalize()
			return
		}
	}
}

// tryAcquireRead takes the read token unless it is held or the connection
// is finalized.
func (c *Conn) tryAcquireRead() bool {
	for {
		s := c.state.Load()
		if s&(stReadHeld|stFinalized) != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s|stReadHeld) {
			return true
		}
	}
}

// releaseRead returns the read token. It returns false, keeping the token,
// when a tear-down was requested meanwhile: the caller must finalize.
func (c *Conn) releaseRead() bool {
	for {
		s := c.state.Load()
		if s&stFinalizeRequested != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s&^stReadHeld) {
			return true
		}
	}
}

// wakeReader interrupts a blocking-mode reader so that it sees the
// tear-down request; epoll-mode holders check the request when they finish.
func (c *Conn) wakeReader() {
	if c.mode == readBlocking {
		_ = c.sock.SetReadDeadline(time.Unix(1, 0))
	}
}

// finalize tears the connection down: the caller holds the read token and
// stFinalizeRequested is set, so this runs exactly once, never during a
// handler call.
func (c *Conn) finalize() {
	c.state.Or(stFinalized)
	c.closing.Store(true)
	c.mu.Lock()
	c.finalized = true
	c.closeQueued = true
	c.dropQueueLocked()
	c.pong, c.pingDue, c.closeFrame, c.head = nil, false, nil, nil
	reason := c.reason
	c.mu.Unlock()
	if reason == nil {
		reason = &CloseError{Code: CloseAbnormal, Err: ErrPeerClosed}
	}
	if c.rc != nil && c.engine.poller != nil && c.polled.Load() {
		c.engine.poller.remove(c.rc)
	}
	// Closing the socket (not the *tls.Conn) skips the TLS close_notify,
	// which could block up to 5 s on a dead peer; a blocked writer fails
	// at once.
	_ = c.sock.Close()
	c.releaseParser(true)
	c.buffered = nil
	c.engine.unregister(c)
	c.handler.OnClose(c, reason)
}

// stall closes a connection whose writer is stuck on a peer that stopped
// reading: it queues a close frame (StallCode), and initiateClose moves the
// blocked write's deadline to CloseTimeout from now, so that the close frame
// goes out if the socket drains a little and the socket is closed if not.
func (c *Conn) stall() {
	c.stalled.Store(true)
	c.initiateClose(&CloseError{Code: c.engine.cfg.StallCode, Reason: "slow consumer", Err: ErrStalled})
}

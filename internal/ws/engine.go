package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config holds an Engine's limits and timers. The zero value of every field
// means the documented default; for the three timers that can be turned
// off, a negative value does that.
type Config struct {
	// MaxMessageSize is the largest data message accepted, after
	// reassembly; a bigger one fails the connection with 1009 before its
	// payload is buffered. Zero means 64 KiB.
	MaxMessageSize int64
	// MaxQueueBytes bounds the outbound bytes queued (and being written)
	// per connection. Zero means 1 MiB.
	MaxQueueBytes int
	// MaxQueueMessages bounds the outbound messages queued (and being
	// written) per connection. Zero means 1024.
	MaxQueueMessages int
	// WriteTimeout is the deadline for each write to the socket (one batch
	// of frames); a peer that does not read fails the write and the
	// connection closes with ErrWrite. The deadline is re-armed only once a
	// quarter of it has passed, so a blocked write fails after between 3/4
	// of WriteTimeout and all of it. Zero means 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often the Engine pings each connection (each at
	// its own phase, so pings are spread over the interval). Zero means
	// 25 s; negative disables pings.
	PingInterval time.Duration
	// IdleTimeout closes a connection (ErrIdleTimeout) when no frame of
	// any kind, pongs included, arrived within it: a close frame with
	// IdleCloseCode is sent, and the socket is closed after CloseTimeout
	// (or at once if the close frame cannot even be written by the next
	// check). It should exceed PingInterval plus a round trip. Zero means
	// 60 s; negative disables it.
	IdleTimeout time.Duration
	// IdleCloseCode is the close code of an idle timeout. Zero means 1001
	// (going away); the gateway uses the protocol's own code.
	IdleCloseCode int
	// ReadTimeout bounds how long a message (all its fragments) or a
	// control frame may take to arrive once its first byte did; past it
	// the connection is closed with 1008 (ErrReadTimeout). Zero means
	// 20 s; negative disables it.
	ReadTimeout time.Duration
	// CloseTimeout is how long to wait, after our close frame was
	// written, for the peer's close frame or EOF before closing the socket
	// anyway. It also bounds the write of the close frame. Zero means 3 s.
	CloseTimeout time.Duration
	// SendBuffer sets each socket's kernel send buffer (SO_SNDBUF; Linux
	// doubles it for bookkeeping). A small one makes a peer that stopped
	// reading block the writer soon, so that it is noticed (StallTimeout)
	// instead of the kernel soaking up megabytes first. Zero means 64 KiB;
	// negative keeps the kernel's auto-tuning.
	SendBuffer int
	// StallTimeout closes a peer that stopped reading: once half of
	// SendBuffer (32 KiB if unset) was written since the peer last answered a
	// ping, a ping probes it, and a probe unanswered (or a socket write
	// blocked) this long is a stall. A close frame with StallCode is
	// queued and a blocked write cut short, so the close frame goes out
	// if the socket takes it; the socket is closed right after it (or
	// within CloseTimeout if it does not go out). OnClose gets
	// ErrStalled. Zero means 1.5 s; negative disables it (WriteTimeout
	// still applies).
	StallTimeout time.Duration
	// StallCode is the close code sent to a stalled peer. Zero means 1008.
	StallCode int

	// blockingReads makes every connection use the portable reader
	// goroutine (tests run both paths on Linux).
	blockingReads bool
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 64 << 10
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.MaxQueueMessages <= 0 {
		c.MaxQueueMessages = 1024
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	def(&c.PingInterval, 25*time.Second)
	def(&c.IdleTimeout, 60*time.Second)
	if c.IdleCloseCode == 0 {
		c.IdleCloseCode = CloseGoingAway
	}
	def(&c.ReadTimeout, 20*time.Second)
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 3 * time.Second
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = 64 << 10
	}
	def(&c.StallTimeout, 1500*time.Millisecond)
	if c.StallCode == 0 {
		c.StallCode = ClosePolicyViolation
	}
	return c
}

// closeGrace is how long a write in progress may still take once a close
// has begun: long enough for a slow but live peer, short for a dead one.
func (c Config) closeGrace() time.Duration {
	if c.StallTimeout > 0 {
		return min(c.CloseTimeout, max(c.StallTimeout/2, 100*time.Millisecond))
	}
	return c.CloseTimeout
}

// probeBytes is how much is written to a connection between stall probes.
func (c Config) probeBytes() int {
	if c.SendBuffer > 0 {
		return c.SendBuffer / 2
	}
	return 32 << 10
}

// sweepTick returns how often the sweeper runs: a quarter of the shortest
// timer, between 1 ms and 1 s.
func (c Config) sweepTick() time.Duration {
	tick := time.Second
	for _, d := range []time.Duration{c.PingInterval, c.IdleTimeout, c.ReadTimeout, c.CloseTimeout, c.StallTimeout} {
		if d > 0 && d/4 < tick {
			tick = d / 4
		}
	}
	return max(tick, time.Millisecond)
}

// numShards is the number of registry shards; connection IDs spread evenly.
const numShards = 32

type connShard struct {
	mu    sync.Mutex
	conns map[uint64]*Conn
}

// Engine serves WebSocket connections after the upgrade. On Linux it reads
// them with its own epoll instance and short-lived goroutines, so an idle
// connection has no goroutine and no buffer; elsewhere (or for a connection
// without a file descriptor) each connection gets a reader goroutine. One
// sweeper goroutine sends keepalive pings and enforces the timeouts.
//
// An Engine's methods are safe for concurrent use.
type Engine struct {
	cfg    Config // static after NewEngine
	log    *slog.Logger
	poller *poller // nil without epoll

	// flushers write the plain epoll connections (flush.go); none
	// without epoll.
	flushers []flusher
	writes   atomic.Uint64 // socket writes by writer goroutines

	nextID atomic.Uint64
	count  atomic.Int64
	shards [numShards]connShard

	// wg counts every goroutine the Engine starts: poller, sweeper,
	// readers and writers.
	wg sync.WaitGroup

	closeMu sync.RWMutex // held for reading while a connection is registered
	closed  bool         // guarded by closeMu
	stop    chan struct{}
}

// NewEngine starts an Engine: its poller (on Linux) and its sweeper. The
// logger may be nil (slog.Default is used). Call Close to stop it.
func NewEngine(cfg Config, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{cfg: cfg.withDefaults(), log: log, stop: make(chan struct{})}
	for i := range e.shards {
		e.shards[i].conns = make(map[uint64]*Conn)
	}
	if pollSupported && !cfg.blockingReads {
		p, err := newPoller()
		if err != nil {
			return nil, err
		}
		e.poller = p
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := p.run(e.dispatch); err != nil {
				// Nothing is read any more: make that loud.
				e.log.Error("ws: poller stopped", "err", err)
			}
		}()
	}
	if e.poller != nil {
		e.flushers = make([]flusher, numFlushers())
		for i := range e.flushers {
			f := &e.flushers[i]
			f.wake = make(chan struct{}, 1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				f.run(e.stop)
			}()
		}
	}
	e.wg.Add(1)
	go e.sweep()
	return e, nil
}

// Serve takes over a connection that completed the opening handshake (see
// Upgrade) and starts serving it with h; value is returned by Conn.Value.
// buffered holds bytes already read past the handshake; Serve owns it
// afterwards (it is unmasked in place).
//
// netConn may be a *net.TCPConn (or any connection with a file descriptor),
// a connection accepted through WrapListener, or a *tls.Conn over one: these
// are read through epoll. Other connections, including a *tls.Conn over a
// listener not wrapped by WrapListener, get a reader goroutine each.
//
// Serve does not call h itself: OnOpen runs on an Engine goroutine, possibly
// before Serve returns. A *tls.Conn must have completed its handshake (as
// after net/http). On error Serve closes netConn.
func (e *Engine) Serve(netConn net.Conn, buffered []byte, h Handler, value any) (*Conn, error) {
	c, err := e.Adopt(netConn, buffered, h, value)
	if err != nil {
		return nil, err
	}
	if c.mode == readBlocking {
		go c.serveBlocking()
	} else {
		go c.serveReads()
	}
	return c, nil
}

// Adopt is Serve without starting the connection: the caller must call the
// Conn's Run exactly once, and soon (until then the connection is neither
// read nor opened). It lets a caller whose goroutine has nothing else to do —
// an HTTP handler after the upgrade — do its bookkeeping first and then run
// the connection's first read round itself. On error it closes netConn.
func (e *Engine) Adopt(netConn net.Conn, buffered []byte, h Handler, value any) (*Conn, error) {
	return e.adopt(netConn, buffered, nil, h, value)
}

// AdoptUpgraded is Adopt for a connection whose 101 response was not
// written yet (UpgradeDeferred returns it): nothing is written to the
// connection until OnOpen has returned; then the response and the frames
// OnOpen sent go out together, in one write (a plain socket's first write is
// made on Run's goroutine), or the response alone if OnOpen sent nothing.
// The write has the usual deadline, Config.WriteTimeout. As everything OnOpen
// sends is still queued when it returns, a CloseWith in OnOpen discards it
// (the close frame follows the response). The client's frames that came with
// the request are read after OnOpen, as with Adopt.
func (e *Engine) AdoptUpgraded(netConn net.Conn, buffered, response []byte, h Handler, value any) (*Conn, error) {
	return e.adopt(netConn, buffered, response, h, value)
}

func (e *Engine) adopt(netConn net.Conn, buffered, response []byte, h Handler, value any) (*Conn, error) {
	if h == nil {
		netConn.Close()
		return nil, errors.New("ws: Serve needs a Handler")
	}
	now := time.Now().UnixNano()
	c := &Conn{
		engine:      e,
		handler:     h,
		value:       value,
		conn:        netConn,
		sock:        netConn,
		writeTo:     netConn,
		mode:        readBlocking,
		connectedAt: now,
		buffered:    buffered,
		holdWrites:  len(response) > 0,
	}
	if len(response) > 0 {
		c.head = &response
	}
	c.lastFrameAt.Store(now)
	if err := c.classify(e.poller != nil); err != nil {
		netConn.Close()
		return nil, err
	}
	if e.cfg.SendBuffer > 0 {
		if tcp, ok := tcpOf(c.sock); ok {
			_ = tcp.SetWriteBuffer(e.cfg.SendBuffer) // best effort: the kernel may clamp it
		}
	}
	// A past read deadline would stop raw reads; net/http may leave one.
	if err := c.sock.SetReadDeadline(time.Time{}); err != nil {
		netConn.Close()
		return nil, fmt.Errorf("ws: clear read deadline: %w", err)
	}

	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		netConn.Close()
		return nil, ErrEngineClosed
	}
	c.id = e.nextID.Add(1)
	// An epoll connection joins the epoll set at the end of its first read
	// round, armed (one epoll_ctl instead of an add here and an arm there).
	if c.mode != readBlocking && c.pc != nil {
		c.pc.nonblocking.Store(true)
	}
	if p := e.cfg.PingInterval; p > 0 {
		c.nextPingAt = now + int64(p/2) + rand.Int64N(int64(p/2)+1)
	}
	// The first reader goroutine holds the read token from the start, so
	// that OnOpen comes first and nothing can tear down before it.
	c.state.Store(stReadHeld)
	e.register(c)
	e.wg.Add(1) // for Run's reader
	return c, nil
}

// Run starts serving a connection from Adopt. In epoll mode the first read
// round (OnOpen, the bytes that came with the upgrade, arming epoll) runs on
// the calling goroutine, which then returns: a goroutine start and its stack
// growth fewer per connection than Serve, which runs it on a new goroutine.
// A blocking-mode connection gets its own reader goroutine either way.
func (c *Conn) Run() {
	if c.mode == readBlocking {
		go c.serveBlocking()
	} else {
		c.serveReads()
	}
}

// tcpOf finds the TCP socket under sock, if there is one.
func tcpOf(sock net.Conn) (*net.TCPConn, bool) {
	if pc, ok := sock.(*pollConn); ok {
		sock = pc.Conn
	}
	tcp, ok := sock.(*net.TCPConn)
	return tcp, ok
}

// classify picks the read mode for the connection and finds the socket
// under it.
func (c *Conn) classify(canPoll bool) error {
	switch nc := c.conn.(type) {
	case *tls.Conn:
		// Reading it in non-blocking mode before the handshake is done
		// would fail the handshake; net/http always completes it first.
		if !nc.ConnectionState().HandshakeComplete {
			return errors.New("ws: TLS handshake not complete")
		}
		c.tlsConn = nc
		c.sock = nc.NetConn()
		if pc, ok := c.sock.(*pollConn); ok && canPoll {
			c.pc, c.rc, c.mode = pc, pc.rc, readTLS
		}
	case *pollConn:
		c.writeTo = nc.Conn // a *net.TCPConn does writev; the wrapper would not
		if u, ok := nc.Conn.(interface{ NetConn() net.Conn }); ok {
			c.writeTo = u.NetConn() // under a connection-counting wrapper
		}
		if canPoll {
			c.pc, c.rc, c.mode = nc, nc.rc, readRawFD
		}
	case syscall.Conn:
		if canPoll {
			rc, err := nc.SyscallConn()
			if err != nil {
				return fmt.Errorf("ws: syscall conn: %w", err)
			}
			c.rc, c.mode = rc, readRawFD
		}
	}
	return nil
}

// dispatch runs on the poller goroutine for each readable connection.
func (e *Engine) dispatch(id uint64) {
	c := e.lookup(id)
	if c == nil || !c.tryAcquireRead() {
		return // closed meanwhile
	}
	e.wg.Add(1)
	go c.serveReads()
}

func (e *Engine) shard(id uint64) *connShard { return &e.shards[id%numShards] }

func (e *Engine) register(c *Conn) {
	s := e.shard(c.id)
	s.mu.Lock()
	s.conns[c.id] = c
	s.mu.Unlock()
	e.count.Add(1)
}

func (e *Engine) unregister(c *Conn) {
	s := e.shard(c.id)
	s.mu.Lock()
	_, ok := s.conns[c.id]
	delete(s.conns, c.id)
	s.mu.Unlock()
	if ok {
		e.count.Add(-1)
	}
}

func (e *Engine) lookup(id uint64) *Conn {
	s := e.shard(id)
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	return c
}

// snapshot appends every live connection to dst.
func (e *Engine) snapshot(dst []*Conn) []*Conn {
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, c := range s.conns {
			dst = append(dst, c)
		}
		s.mu.Unlock()
	}
	return dst
}

// Len returns the number of live connections.
func (e *Engine) Len() int { return int(e.count.Load()) }

// Range calls fn for each live connection until fn returns false. It works
// on a snapshot taken without holding locks during the calls, so fn may
// call any Conn or Engine method; connections opened meanwhile may be
// missed.
func (e *Engine) Range(fn func(c *Conn) bool) {
	for _, c := range e.snapshot(nil) {
		if !fn(c) {
			return
		}
	}
}

// sweep is the Engine's one timer goroutine: every tick it visits every
// connection to send due pings and enforce IdleTimeout, ReadTimeout and
// CloseTimeout.
func (e *Engine) sweep() {
	defer e.wg.Done()
	ticker := time.NewTicker(e.cfg.sweepTick())
	defer ticker.Stop()
	var conns []*Conn
	for {
		select {
		case <-e.stop:
			return
		case t := <-ticker.C:
			now := t.UnixNano()
			conns = e.snapshot(conns[:0])
			for _, c := range conns {
				e.check(c, now)
			}
			clear(conns)
		}
	}
}

func (e *Engine) check(c *Conn, now int64) {
	cfg := &e.cfg
	if c.state.Load()&stFinalized != 0 {
		return
	}
	if sent := c.closeSentAt.Load(); sent != 0 {
		wait := cfg.CloseTimeout
		if c.stalled.Load() { // it is not reading: its close reply will not come
			wait = cfg.closeGrace()
		}
		if now-sent > int64(wait) {
			c.requestFinalize(nil) // the reason was recorded when the close began
		}
		return
	}
	if cfg.IdleTimeout > 0 && now-c.lastFrameAt.Load() > int64(cfg.IdleTimeout) {
		if c.closing.Load() {
			// The close frame could not be written: the peer is gone.
			c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: ErrIdleTimeout})
			return
		}
		c.initiateClose(&CloseError{Code: cfg.IdleCloseCode, Reason: "idle timeout", Err: ErrIdleTimeout})
		return
	}
	if cfg.StallTimeout > 0 && !c.closing.Load() {
		// A peer that stopped reading: its kernel may soak up megabytes
		// before our writes block, so the writer being blocked is not
		// enough. Once half a send buffer has been written since the
		// peer last answered, a ping probes it; a probe (or a write)
		// pending past StallTimeout is a stall.
		if since := c.writeSince.Load(); since != 0 && now-since > int64(cfg.StallTimeout) {
			c.stall()
			return
		}
		if at := c.probeAt.Load(); at != 0 {
			if now-at > int64(cfg.StallTimeout) {
				c.stall()
				return
			}
		} else if c.bytesOut.Load()-c.probeBase.Load() > uint64(cfg.probeBytes()) {
			c.probeAt.Store(now)
			c.queuePing()
		}
	}
	if since := c.partialSince.Load(); cfg.ReadTimeout > 0 && since != 0 && now-since > int64(cfg.ReadTimeout) && !c.closing.Load() {
		c.initiateClose(&CloseError{Code: ClosePolicyViolation, Reason: "read timeout", Err: ErrReadTimeout})
		return
	}
	if cfg.PingInterval > 0 && now >= c.nextPingAt {
		c.queuePing()
		c.nextPingAt += int64(cfg.PingInterval)
		if c.nextPingAt <= now { // the sweeper fell behind: don't burst
			c.nextPingAt = now + int64(cfg.PingInterval)
		}
	}
}

// Shutdown starts the closing handshake on every connection with code and
// reason (see Conn.CloseWith) and waits until all are closed or ctx is done,
// returning ctx.Err() in that case. It does not stop the Engine or refuse new
// connections: stop accepting first, and call Close afterwards.
func (e *Engine) Shutdown(ctx context.Context, code int, reason string) error {
	e.Range(func(c *Conn) bool {
		_ = c.CloseWith(code, reason)
		return true
	})
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for e.Len() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("ws: shutdown with %d connections left: %w", e.Len(), ctx.Err())
		case <-ticker.C:
		}
	}
	return nil
}

// Close stops the Engine: it refuses new connections, closes every live
// connection at once (no close frame; OnClose gets ErrEngineClosed, and may
// run in the caller's goroutine), stops the poller and the sweeper, and waits
// for every Engine goroutine to return, handler calls in progress included.
// Use Shutdown first for a graceful close. Calling Close again does nothing.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	if e.closed {
		e.closeMu.Unlock()
		return nil
	}
	e.closed = true
	e.closeMu.Unlock()

	close(e.stop)
	for _, c := range e.snapshot(nil) {
		c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: ErrEngineClosed})
	}
	if e.poller != nil {
		e.poller.wake()
	}
	e.wg.Wait()
	if e.poller != nil {
		e.poller.close()
	}
	if n := e.Len(); n != 0 {
		return errors.New("ws: connections left after Close") // a bug, not a runtime condition
	}
	return nil
}

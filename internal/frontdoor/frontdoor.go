// Package frontdoor reads the first request of every accepted connection
// and serves WebSocket upgrades to a few paths itself, handing every other
// connection on to net/http.
//
// Why: an upgrade served by net/http pays for machinery the connection
// never uses again. It allocates three bufio buffers and a fourth on Hijack
// (none of them return to its pools), starts a background read that Hijack
// must abort, and grows a fresh goroutine's stack. Together that was about a
// sixth of the server's CPU per handshake (docs/benchmarks.md).
//
// The parser takes only plain requests and leaves anything unusual to
// net/http. It takes GET with an origin-form target, HTTP/1.1, one Host,
// and token header names with printable values. It refuses bodies,
// continuation lines, Pragma and heads over 4 KiB. Whatever it takes,
// net/http parses to the same method, target, host and headers (a fuzz
// test checks it). The request then runs through the same http.Handler as
// every other request, with its middleware.
package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Serve accepts connections on ln and serves them with srv: the first
// request of a connection goes to srv.Handler directly when it is a GET of
// one of paths (the WebSocket endpoints), and the connection goes to
// srv.Serve otherwise. It returns what srv.Serve returns, once the
// connections it was still reading are done. Shut it down with
// srv.Shutdown or srv.Close, as for srv.Serve.
//
// srv's ReadHeaderTimeout (or ReadTimeout) bounds the reading of the first
// request, TLS handshake included; WriteTimeout bounds a refusal's answer.
// srv.BaseContext gives the requests' base context; srv.ConnContext and
// srv.ConnState see only the connections net/http gets. Serve wraps
// srv.Handler and srv.ConnContext so that those connections' requests
// still carry their TLS state.
func Serve(srv *http.Server, ln net.Listener, paths ...string) error {
	d := &door{
		srv:     srv,
		ln:      ln,
		paths:   paths,
		handoff: make(chan net.Conn),
		done:    make(chan struct{}),
		reading: make(map[net.Conn]struct{}),
	}
	d.base = context.Background()
	if srv.BaseContext != nil {
		d.base = srv.BaseContext(ln)
	}
	// net/http sees the TLS state of the connections it gets from here
	// through this hook: they reach it wrapped, not as *tls.Conn.
	inner, innerCtx := srv.Handler, srv.ConnContext
	if inner == nil {
		inner = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r2 := *r
				r2.TLS = st
				r = &r2
			}
		}
		inner.ServeHTTP(w, r)
	})
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if pc, ok := c.(*prefixConn); ok {
			if tc, ok := pc.Conn.(*tls.Conn); ok {
				st := tc.ConnectionState()
				ctx = context.WithValue(ctx, tlsStateKey{}, &st)
			}
		}
		if innerCtx != nil {
			ctx = innerCtx(ctx, c)
		}
		return ctx
	}
	d.wg.Add(1)
	go d.acceptLoop()
	err := srv.Serve(d)
	d.Close()
	d.wg.Wait()
	return err
}

type tlsStateKey struct{}

// door is the listener srv.Serve reads: it yields the connections the fast
// path did not take.
type door struct {
	srv     *http.Server
	ln      net.Listener
	paths   []string
	base    context.Context
	handoff chan net.Conn
	wg      sync.WaitGroup // the accept loop and every connection being served

	closeOnce sync.Once
	done      chan struct{}
	mu        sync.Mutex
	err       error                 // why the accept loop ended
	reading   map[net.Conn]struct{} // first requests being read, cut short on Close
	closed    bool
}

// Accept returns the next connection for net/http.
func (d *door) Accept() (net.Conn, error) {
	select {
	case c := <-d.handoff:
		return c, nil
	case <-d.done:
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.err != nil {
			return nil, d.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting and cuts short the reads of first requests.
func (d *door) Close() error {
	var err error
	d.closeOnce.Do(func() {
		err = d.ln.Close()
		d.mu.Lock()
		d.closed = true
		for c := range d.reading {
			c.SetReadDeadline(time.Unix(1, 0))
		}
		d.mu.Unlock()
		close(d.done)
	})
	return err
}

func (d *door) Addr() net.Addr { return d.ln.Addr() }

func (d *door) acceptLoop() {
	defer d.wg.Done()
	var pause time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if outOfResources(err) {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				d.logf("frontdoor: accept error: %v; retrying in %v", err, pause)
				select {
				case <-time.After(pause):
					continue
				case <-d.done:
					return
				}
			}
			d.mu.Lock()
			if !d.closed {
				d.err = err
			}
			d.mu.Unlock()
			d.Close()
			return
		}
		pause = 0
		if !d.track(c) {
			c.Close()
			return
		}
		d.wg.Add(1)
		go d.serveConn(c)
	}
}

// outOfResources reports the accept errors that pass (the process or the
// kernel out of descriptors or memory, a connection aborted while queued),
// on which the loop pauses and goes on, as net/http's does.
func outOfResources(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// track registers c as being read; false once the door is closed.
func (d *door) track(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.reading[c] = struct{}{}
	return true
}

func (d *door) untrack(c net.Conn) {
	d.mu.Lock()
	delete(d.reading, c)
	d.mu.Unlock()
}

func (d *door) logf(format string, args ...any) {
	if d.srv.ErrorLog != nil {
		d.srv.ErrorLog.Printf(format, args...)
	}
}

// headPool holds the buffers first requests are read into. A head that
// does not fit goes to net/http, whose limit is MaxHeaderBytes.
var headPool = sync.Pool{New: func() any { return new([maxHead]byte) }}

const maxHead = 4096

func (d *door) serveConn(c net.Conn) {
	defer d.wg.Done()
	buf := headPool.Get().(*[maxHead]byte)
	defer headPool.Put(buf)
	n, end, err := d.readHead(c, buf[:])
	d.untrack(c)
	if end < 0 {
		if err != nil {
			// Closed, timed out or a failed TLS handshake before a whole
			// head arrived: net/http would close it too.
			if isHandshakeFailure(c) {
				d.logf("http: TLS handshake error from %s: %v", c.RemoteAddr(), err)
			}
			c.Close()
			return
		}
		d.handOff(c, buf[:n]) // the head is larger than the buffer
		return
	}
	req, ok := parseHead(buf[:end])
	if !ok || !d.fastPath(req.url.Path) {
		d.handOff(c, buf[:n])
		return
	}
	d.serveUpgrade(c, req, buf[end:n])
}

// readHead reads until the end of the request head ("\r\n\r\n"); end is
// the offset just past it, or -1.
func (d *door) readHead(c net.Conn, buf []byte) (n, end int, err error) {
	timeout := d.srv.ReadHeaderTimeout
	if timeout <= 0 {
		timeout = d.srv.ReadTimeout
	}
	if timeout > 0 {
		// Both ways: the TLS handshake inside the first Read writes too.
		c.SetDeadline(time.Now().Add(timeout))
	}
	for n < len(buf) {
		var m int
		m, err = c.Read(buf[n:])
		from := max(n-3, 0)
		n += m
		if i := bytes.Index(buf[from:n], []byte("\r\n\r\n")); i >= 0 {
			return n, from + i + 4, nil
		}
		if err != nil {
			return n, -1, err
		}
	}
	return n, -1, nil
}

func isHandshakeFailure(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	return ok && !tc.ConnectionState().HandshakeComplete
}

func (d *door) fastPath(path string) bool {
	for _, p := range d.paths {
		if path == p {
			return true
		}
	}
	return false
}

// handOff gives c to net/http, which reads read again first.
func (d *door) handOff(c net.Conn, read []byte) {
	c.SetDeadline(time.Time{}) // net/http sets its own, if the server has any
	pc := &prefixConn{Conn: c}
	if len(read) > 0 {
		pc.prefix = append([]byte(nil), read...)
	}
	select {
	case d.handoff <- pc:
	case <-d.done:
		c.Close()
	}
}

// prefixConn replays bytes already read from its connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close before closing, as it does with the
// connections it accepts itself (TCP and TLS both have it).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// serveUpgrade runs the handler on req; rest is what the client sent
// after the head, which the handler gets back through Hijack.
func (d *door) serveUpgrade(c net.Conn, h *head, rest []byte) {
	ctx, cancel := context.WithCancel(d.base)
	defer cancel()
	r := h.request(ctx, c)
	w := &responseWriter{conn: c, header: make(http.Header, 4), rest: rest}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				d.logf("http: panic serving %s: %v\n%s", r.RemoteAddr, p, debug.Stack())
			}
			if !w.hijacked {
				c.Close()
			}
		}
	}()
	d.srv.Handler.ServeHTTP(w, r)
	if w.hijacked {
		return
	}
	if t := d.srv.WriteTimeout; t > 0 {
		c.SetWriteDeadline(time.Now().Add(t))
	}
	w.finish()
}

// responseWriter answers a request of the fast path: a refusal, written
// when the handler returns, on a connection then closed; or nothing, when
// the handler hijacks the connection.
type responseWriter struct {
	conn     net.Conn
	header   http.Header
	status   int
	body     []byte
	rest     []byte
	hijacked bool
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 && !w.hijacked {
		w.status = status
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// Hijack hands the connection over, with what the client sent after the
// head in the reader's buffer.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.status != 0 {
		return nil, nil, errors.New("frontdoor: hijack after the response started")
	}
	w.hijacked = true
	br := bufio.NewReaderSize(bytes.NewReader(w.rest), max(len(w.rest), 16))
	if len(w.rest) > 0 {
		br.Peek(len(w.rest)) // into the buffer, where Buffered counts it
	}
	return w.conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.conn, 64)), nil
}

// finish writes the response as net/http would (Date, Content-Length,
// a sniffed Content-Type), with Connection: close, and closes.
func (w *responseWriter) finish() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.header
	if h.Get("Content-Type") == "" && len(w.body) > 0 {
		h.Set("Content-Type", http.DetectContentType(w.body))
	}
	h.Set("Content-Length", strconv.Itoa(len(w.body)))
	h.Set("Connection", "close")
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	h.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body)
	// Closed at once, as net/http closes after answering a request without
	// a body: lingering would keep a goroutine per refusal in a flood.
	w.conn.Write(b.Bytes())
	w.conn.Close()
}

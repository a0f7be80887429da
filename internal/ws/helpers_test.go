package ws_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/tlscert"
	"github.com/unhidra/unhidra/internal/ws"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transport is one way of serving connections: plain or TLS, through epoll
// or through the portable reader goroutine.
type transport struct {
	name     string
	tls      bool
	blocking bool
}

func transports() []transport {
	ts := []transport{{"plain", false, true}, {"tls", true, true}}
	if ws.PollSupported {
		ts = []transport{
			{"plain-epoll", false, false}, {"tls-epoll", true, false},
			{"plain-goroutine", false, true}, {"tls-goroutine", true, true},
		}
	}
	return ts
}

// forEachTransport runs fn once per transport.
func forEachTransport(t *testing.T, fn func(t *testing.T, tr transport)) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) { fn(t, tr) })
	}
}

// testTLS is a self-signed ECDSA certificate for 127.0.0.1 made once per
// test binary.
var testTLS = sync.OnceValues(func() (*tls.Config, *x509.CertPool) {
	certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		panic(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pool
})

func clientTLSConfig() *tls.Config {
	_, pool := testTLS()
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// event is what the recording handler saw.
type event struct {
	kind string // "open", "message", "close"
	conn *ws.Conn
	text bool
	data []byte
	err  error
}

// connState is the per-connection Value the recording handler uses to check
// the Handler contract: order, no overlap, OnClose once.
type connState struct {
	inCall atomic.Int32
	opened atomic.Bool
	closed atomic.Bool
}

// recorder is a Handler that checks the call contract and forwards events.
type recorder struct {
	t      testing.TB
	events chan event
	echo   bool
	// onMessage, if set, runs instead of the echo.
	onMessage func(c *ws.Conn, text bool, data []byte)
}

func (h *recorder) enter(c *ws.Conn, what string) *connState {
	st := c.Value().(*connState)
	if n := st.inCall.Add(1); n != 1 {
		h.t.Errorf("%s: %d handler calls overlap on one connection", what, n)
	}
	if st.closed.Load() {
		h.t.Errorf("%s after OnClose", what)
	}
	if what != "open" && !st.opened.Load() {
		h.t.Errorf("%s before OnOpen", what)
	}
	return st
}

func (h *recorder) OnOpen(c *ws.Conn) {
	st := h.enter(c, "open")
	if st.opened.Swap(true) {
		h.t.Error("OnOpen twice")
	}
	h.events <- event{kind: "open", conn: c}
	st.inCall.Add(-1)
}

func (h *recorder) OnMessage(c *ws.Conn, text bool, data []byte) {
	st := h.enter(c, "message")
	defer st.inCall.Add(-1)
	if h.onMessage != nil {
		h.onMessage(c, text, data)
	} else if h.echo {
		var err error
		if text {
			err = c.SendText(data)
		} else {
			err = c.SendBinary(data)
		}
		if err != nil && !errors.Is(err, ws.ErrClosed) {
			h.t.Errorf("echo: %v", err)
		}
	}
	h.events <- event{kind: "message", conn: c, text: text, data: append([]byte(nil), data...)}
}

func (h *recorder) OnClose(c *ws.Conn, err error) {
	st := h.enter(c, "close")
	if st.closed.Swap(true) {
		h.t.Error("OnClose twice")
	}
	var ce *ws.CloseError
	if !errors.As(err, &ce) {
		h.t.Errorf("OnClose error %T is not a *CloseError: %v", err, err)
	}
	st.inCall.Add(-1)
	h.events <- event{kind: "close", conn: c, err: err}
}

// next returns the next event of the given kind, skipping others, or fails
// the test after a generous timeout (a hang, not a measurement).
func (h *recorder) next(t testing.TB, kind string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-h.events:
			if ev.kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event within 10 s", kind)
		}
	}
}

// testServer is an http.Server with a WebSocket endpoint at /ws served by an
// Engine.
type testServer struct {
	engine *ws.Engine
	h      *recorder
	addr   string
	tls    bool
	// beforeServe, if set, sees the hijacked connection before Serve.
	beforeServe func(net.Conn)
	// subprotocol picks the subprotocol to accept from the client's offer.
	subprotocol func(offered []string) string
	// deferred upgrades like the gateway: UpgradeDeferred, AdoptUpgraded,
	// Run on the handler's goroutine (the 101 goes out with OnOpen's frames).
	deferred bool
	// handler, if set, serves the connections instead of h.
	handler ws.Handler
}

type serverOpt func(*testServer)

func startServer(t testing.TB, tr transport, cfg ws.Config, opts ...serverOpt) *testServer {
	t.Helper()
	if tr.blocking {
		cfg = ws.WithBlockingReads(cfg)
	}
	engine, err := ws.NewEngine(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{
		engine: engine,
		h:      &recorder{t: t, events: make(chan event, 100000), echo: true},
		tls:    tr.tls,
	}
	for _, o := range opts {
		o(ts)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	var l net.Listener = ws.WrapListener(ln)
	if tr.tls {
		cfg, _ := testTLS()
		l = tls.NewListener(l, cfg)
	}
	mux := http.NewServeMux()
	var handlers sync.WaitGroup // http.Server.Close does not wait for hijacked handlers
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		sub := ""
		if ts.subprotocol != nil {
			sub = ts.subprotocol(websocketProtocols(r))
		}
		var h ws.Handler = ts.h
		if ts.handler != nil {
			h = ts.handler
		}
		if ts.deferred {
			nc, buffered, response, err := ws.UpgradeDeferred(w, r, sub, nil)
			if err != nil {
				return
			}
			c, err := engine.AdoptUpgraded(nc, buffered, response, h, &connState{})
			if err != nil {
				t.Errorf("AdoptUpgraded: %v", err)
				return
			}
			c.Run()
			return
		}
		nc, buffered, err := ws.Upgrade(w, r, sub, nil)
		if err != nil {
			return
		}
		if ts.beforeServe != nil {
			ts.beforeServe(nc)
		}
		if _, err := engine.Serve(nc, buffered, h, &connState{}); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	srv := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		handlers.Wait()
		if err := engine.Close(); err != nil {
			t.Error(err)
		}
	})
	return ts
}

func websocketProtocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (ts *testServer) url() string {
	if ts.tls {
		return "wss://" + ts.addr + "/ws"
	}
	return "ws://" + ts.addr + "/ws"
}

// dial connects a coder/websocket client.
func (ts *testServer) dial(t testing.TB, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	tr := &http.Transport{TLSClientConfig: clientTLSConfig(), DisableKeepAlives: true}
	opts.HTTPClient = &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.url(), opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow(); tr.CloseIdleConnections() })
	return c
}

// rawClient is a hand-driven client speaking frames over TCP (or TLS).
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw opens a TCP (or TLS) connection without the handshake.
func (ts *testServer) dialRawConn(t testing.TB) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ts.tls {
		tc := tls.Client(nc, clientTLSConfig())
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		nc = tc
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

const testKey = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's sample

func upgradeRequest(extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\n" + extra + "\r\n"
}

// dialRaw connects and completes the handshake; after is sent in the same
// write as the request (frames the server must find in its buffered bytes).
func (ts *testServer) dialRaw(t testing.TB, after []byte) *rawClient {
	t.Helper()
	nc := ts.dialRawConn(t)
	rc := &rawClient{t: t, conn: nc, br: bufio.NewReader(nc)}
	if _, err := nc.Write(append([]byte(upgradeRequest("")), after...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Fatalf("accept %q, want %q", got, want)
	}
	return rc
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.conn.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

// frame is a server frame as the raw client read it.
type frame struct {
	op      ws.Opcode
	fin     bool
	payload []byte
}

func (f frame) closeCode() int {
	if f.op != ws.OpClose || len(f.payload) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

// readFrame reads one server frame; it fails on a masked frame.
func (rc *rawClient) readFrame() (frame, error) {
	_ = rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(rc.br, hdr[:]); err != nil {
		return frame{}, err
	}
	if hdr[1]&0x80 != 0 {
		return frame{}, errors.New("server frame is masked")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(rc.br, ext[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(rc.br, ext[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		return frame{}, err
	}
	return frame{op: ws.Opcode(hdr[0] & 0x0F), fin: hdr[0]&0x80 != 0, payload: p}, nil
}

// readUntil reads frames until one with op arrives; it fails the test on
// error.
func (rc *rawClient) readUntil(op ws.Opcode) frame {
	rc.t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("waiting for opcode %d: %v", op, err)
		}
		if f.op == op {
			return f
		}
	}
}

// expectEOF reads until the server closes the connection, skipping frames,
// and returns the frames seen.
func (rc *rawClient) expectEOF() []frame {
	rc.t.Helper()
	var frames []frame
	for {
		f, err := rc.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return frames
			}
			rc.t.Fatalf("expected EOF, got %v", err)
		}
		frames = append(frames, f)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// maskedFrame builds a masked client frame.
func maskedFrame(op ws.Opcode, fin bool, payload []byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var out []byte
	switch n := len(payload); {
	case n <= 125:
		out = append(out, b0, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, b0, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	key := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

func closeFramePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func closeErr(t testing.TB, err error) *ws.CloseError {
	t.Helper()
	var ce *ws.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("not a *ws.CloseError: %v", err)
	}
	return ce
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

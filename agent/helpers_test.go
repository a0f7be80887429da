package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/internal/tlscert"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testKey = "unhidra_dk_dev1_s3cr3tS3cr3tS3cr3t"

// waitFor bounds every real-time wait of the tests.
const waitFor = 10 * time.Second

// fakeClock is a manual Clock: timers fire only when Advance passes them.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed when a timer is created
}

type fakeTimer struct {
	clk  *fakeClock
	c    chan time.Time
	at   time.Time
	d    time.Duration
	done bool // fired or stopped
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) agent.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{clk: f, c: make(chan time.Time, 1), at: f.now.Add(d), d: d}
	if d <= 0 {
		t.c <- f.now
		t.done = true
	} else {
		f.timers = append(f.timers, t)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves time forward, firing due timers in order.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	sort.SliceStable(f.timers, func(i, j int) bool { return f.timers[i].at.Before(f.timers[j].at) })
	kept := f.timers[:0]
	for _, t := range f.timers {
		switch {
		case t.done:
		case !t.at.After(f.now):
			t.done = true
			t.c <- t.at
		default:
			kept = append(kept, t)
		}
	}
	f.timers = kept
}

// pending returns the durations of the active timers.
func (f *fakeClock) pending() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ds []time.Duration
	for _, t := range f.timers {
		if !t.done {
			ds = append(ds, t.d)
		}
	}
	return ds
}

// waitTimer waits (in real time) until an active timer satisfies ok and
// returns its duration.
func (f *fakeClock) waitTimer(t *testing.T, what string, ok func(time.Duration) bool) time.Duration {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		f.mu.Lock()
		ch := f.changed
		for _, tm := range f.timers {
			if !tm.done && ok(tm.d) {
				f.mu.Unlock()
				return tm.d
			}
		}
		f.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond): // timers also end by Stop
		case <-deadline:
			t.Fatalf("no timer for %s; pending: %v", what, f.pending())
		}
	}
}

func (f *fakeClock) waitTimerExactly(t *testing.T, what string, d time.Duration) {
	t.Helper()
	f.waitTimer(t, what, func(x time.Duration) bool { return x == d })
}

// testServer is a TLS WebSocket server standing in for the gateway.
type testServer struct {
	*httptest.Server
	URL     string // wss://…/ws
	pool    *x509.CertPool
	certDER []byte

	mu       sync.Mutex
	requests []*http.Request
	refuse   func(n int, w http.ResponseWriter) bool // before the upgrade; true = refused
	echo     []string
	conns    chan *serverConn
	welcome  func(n int) map[string]any
	silent   bool // connections are never read: pings go unanswered
}

type serverConn struct {
	t      *testing.T
	ws     *websocket.Conn
	r      *http.Request
	n      int // 0-based connection number
	frames chan frame
	pings  atomic.Int64
}

type frame struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1", "localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	s := &testServer{pool: pool, certDER: cert.Certificate[0], conns: make(chan *serverConn, 16)}
	s.welcome = func(int) map[string]any {
		return map[string]any{
			"type": "welcome", "protocol": "unhidra.v1", "session": "sess_1",
			"identity":           map[string]any{"id": "dev_abc", "name": "sensor-1", "kind": "device"},
			"heartbeat_interval": 60, "ping_interval": 25, "idle_timeout": 90,
		}
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.Server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	s.URL = "wss://" + s.Listener.Addr().String() + "/ws"
	t.Cleanup(func() {
		s.Close()
		for {
			select {
			case c := <-s.conns:
				c.ws.CloseNow()
			default:
				return
			}
		}
	})
	return s
}

func (s *testServer) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, r.Clone(context.Background()))
	refuse, echo, welcome, silent := s.refuse, s.echo, s.welcome, s.silent
	s.mu.Unlock()
	if refuse != nil && refuse(n, w) {
		return
	}
	sc := &serverConn{r: r, n: n, frames: make(chan frame, 64)}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:   echo,
		OnPingReceived: func(context.Context, []byte) bool { sc.pings.Add(1); return true },
	})
	if err != nil {
		return
	}
	sc.ws = c
	if wf := welcome(n); wf != nil {
		b, _ := json.Marshal(wf)
		ctx, cancel := context.WithTimeout(r.Context(), waitFor)
		c.Write(ctx, websocket.MessageText, b)
		cancel()
	}
	if !silent {
		// The pump reads (and so answers pings) until the connection ends.
		go func() {
			for {
				typ, data, err := c.Read(context.Background())
				sc.frames <- frame{typ, data, err}
				if err != nil {
					close(sc.frames)
					return
				}
			}
		}()
	}
	s.conns <- sc
}

func (s *testServer) request(i int) *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[i]
}

func (s *testServer) requestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// accept waits for the next upgraded connection.
func (s *testServer) accept(t *testing.T) *serverConn {
	t.Helper()
	select {
	case c := <-s.conns:
		c.t = t
		t.Cleanup(func() { c.ws.CloseNow() })
		return c
	case <-time.After(waitFor):
		t.Fatal("no connection from the agent")
		return nil
	}
}

// readJSON reads the next text frame as a JSON object.
func (c *serverConn) readJSON() map[string]any {
	c.t.Helper()
	var f frame
	select {
	case f = <-c.frames:
	case <-time.After(waitFor):
		c.t.Fatal("server read: timed out")
	}
	typ, data, err := f.typ, f.data, f.err
	if err != nil {
		c.t.Fatalf("server read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("frame type %v", typ)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("frame %s: %v", data, err)
	}
	return m
}

// closed waits for the end of the connection and returns its error.
func (c *serverConn) closed() error {
	c.t.Helper()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return errors.New("closed")
			}
			if f.err != nil {
				return f.err
			}
		case <-time.After(waitFor):
			c.t.Fatal("connection not closed")
			return nil
		}
	}
}

// waitPings waits until the server has received n pings.
func (c *serverConn) waitPings(n int64) {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for c.pings.Load() < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("server received %d pings, want %d", c.pings.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// readType skips frames until one of type typ.
func (c *serverConn) readType(typ string) map[string]any {
	c.t.Helper()
	for {
		if m := c.readJSON(); m["type"] == typ {
			return m
		}
	}
}

func (c *serverConn) send(v any) {
	c.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("server write: %v", err)
	}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningAgent is an Agent running in a goroutine the test owns.
type runningAgent struct {
	*agent.Agent
	clk    *fakeClock
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startAgent runs an agent against s with a fake clock, constant jitter
// (0.5 = none) and fixed uptime/free memory, overridden by edit.
func startAgent(t *testing.T, s *testServer, edit func(*agent.Config)) *runningAgent {
	t.Helper()
	clk := newFakeClock()
	logs := &syncBuffer{}
	cfg := agent.Config{
		URL: s.URL, Key: testKey, RootCAs: s.pool,
		Clock:      clk,
		Rand:       func() float64 { return 0.5 },
		Uptime:     func() (time.Duration, error) { return 1234 * time.Second, nil },
		FreeMemory: func() (uint64, error) { return 180000, nil },
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, clk: clk, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ra.done:
		case <-time.After(waitFor):
			t.Error("agent did not stop")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), testKey) {
			t.Errorf("the device key appears in the logs:\n%s", logs.String())
		}
	})
	return ra
}

// wait returns Run's result.
func (ra *runningAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ra.done:
		ra.done <- err // for the cleanup
		return err
	case <-time.After(waitFor):
		t.Fatal("agent did not stop")
		return nil
	}
}

// command sends a command and returns its ack.
func (c *serverConn) command(id, name string, params any) map[string]any {
	c.t.Helper()
	f := map[string]any{"type": "command", "id": id, "command": name}
	if params != nil {
		f["params"] = params
	}
	c.send(f)
	for {
		m := c.readType("ack")
		if m["id"] == id {
			return m
		}
	}
}

func fmtAck(m any) string { return fmt.Sprintf("%v", m) }

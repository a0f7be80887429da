package frontdoor

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/tlscert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seen is what a test handler saw of a request.
type seen struct {
	fast     bool // served by the fast path
	tls      bool
	host     string
	protos   []string
	buffered string // what Hijack's reader held
}

type harness struct {
	addr   string
	srv    *http.Server
	served chan error
	seen   chan seen
	client *tls.Config // nil: plain TCP
}

// start serves on a loopback port: /ws hijacks and echoes "ok:" plus what
// it was handed after the head, /refuse answers 401, /panic panics, and
// every other path answers 200 "plain".
func start(t *testing.T, withTLS bool, readHeaderTimeout time.Duration) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{addr: ln.Addr().String(), served: make(chan error, 1), seen: make(chan seen, 16)}
	if withTLS {
		certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(certPEM)
		h.client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	mux := http.NewServeMux()
	note := func(w http.ResponseWriter, r *http.Request, buffered string) {
		_, fast := w.(*responseWriter)
		h.seen <- seen{fast: fast, tls: r.TLS != nil, host: r.Host, protos: r.Header.Values("Sec-WebSocket-Protocol"), buffered: buffered}
	}
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		var buffered []byte
		if n := brw.Reader.Buffered(); n > 0 {
			buffered, _ = brw.Reader.Peek(n)
		}
		note(w, r, string(buffered))
		conn.SetDeadline(time.Time{})
		io.WriteString(conn, "ok:"+string(buffered))
		conn.Close()
	})
	mux.HandleFunc("GET /refuse", func(w http.ResponseWriter, r *http.Request) {
		note(w, r, "")
		w.Header().Set("Retry-After", "2")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"no"}`)
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("handler bug") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil {
			time.Sleep(d)
		}
		note(w, r, "")
		io.WriteString(w, "plain")
	})
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { h.served <- Serve(h.srv, ln, "/ws", "/refuse", "/panic") }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-h.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	h.srv = nil
}

func (h *harness) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	if h.client != nil {
		c = tls.Client(c, h.client)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails the test instead of stalling it
	t.Cleanup(func() { c.Close() })
	return c
}

func upgradeTo(path string) string {
	return strings.Replace(upgradeHead, "/ws?v=1", path, 1)
}

func TestServe_UpgradeTakesTheFastPath(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		h := start(t, withTLS, 5*time.Second)
		c := h.dial(t)
		// The first frame right behind the head, in the same write.
		if _, err := io.WriteString(c, upgradeHead+"first-frame"); err != nil {
			t.Fatal(err)
		}
		got := <-h.seen
		if !got.fast || got.tls != withTLS || got.host != "example.com:8443" || len(got.protos) != 2 {
			t.Fatalf("tls=%v: handler saw %+v", withTLS, got)
		}
		reply, _ := io.ReadAll(c)
		if string(reply) != "ok:first-frame" {
			t.Fatalf("tls=%v: reply %q, want the bytes after the head handed to the handler", withTLS, reply)
		}
	}
}

func TestServe_RefusalOnTheFastPathIsAnHTTPResponse(t *testing.T) {
	h := start(t, false, 5*time.Second)
	c := h.dial(t)
	io.WriteString(c, upgradeTo("/refuse"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if got := <-h.seen; !got.fast {
		t.Fatal("the refusal did not come from the fast path")
	}
	if resp.StatusCode != 401 || string(body) != `{"error":"no"}` || resp.Header.Get("Retry-After") != "2" ||
		resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) ||
		resp.Header.Get("Date") == "" || !resp.Close {
		t.Fatalf("response %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection still open after the refusal: %d, %v", n, err)
	}
}

func TestServe_EverythingElseGoesToNetHTTP(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		h := start(t, withTLS, 5*time.Second)
		c := h.dial(t)
		br := bufio.NewReader(c)
		// Two requests on one connection: net/http keeps it alive.
		for i := 0; i < 2; i++ {
			io.WriteString(c, "GET /other HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			got := <-h.seen
			if string(body) != "plain" || got.fast || got.tls != withTLS {
				t.Fatalf("tls=%v request %d: %q, handler saw %+v (TLS state must reach net/http's requests too)", withTLS, i, body, got)
			}
		}
		// An upgrade path, but nothing the fast path takes: net/http
		// serves it, and still hands over what followed the head.
		for name, head := range map[string]string{
			"a head over 4 KiB": strings.Replace(upgradeHead, "Upgrade:", "X-Pad: "+strings.Repeat("p", maxHead)+"\r\nUpgrade:", 1),
			"an unusual head":   strings.Replace(upgradeHead, "Upgrade:", "X-Pad: caf\xc3\xa9\r\nUpgrade:", 1),
		} {
			c := h.dial(t)
			io.WriteString(c, head+"tail")
			got := <-h.seen
			reply, _ := io.ReadAll(c)
			if got.fast || got.tls != withTLS || string(reply) != "ok:tail" {
				t.Fatalf("tls=%v, %s: handler saw %+v, reply %q", withTLS, name, got, reply)
			}
		}
	}
}

func TestServe_PanickingHandlerClosesOnlyItsConnection(t *testing.T) {
	h := start(t, false, 5*time.Second)
	c := h.dial(t)
	io.WriteString(c, upgradeTo("/panic"))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read after the panic: %d, %v", n, err)
	}
	c = h.dial(t)
	io.WriteString(c, upgradeHead)
	if got := <-h.seen; !got.fast {
		t.Fatalf("after the panic: %+v", got)
	}
	if reply, _ := io.ReadAll(c); string(reply) != "ok:" {
		t.Fatalf("after the panic: reply %q", reply)
	}
}

// A client that sends part of a head and stalls is dropped at the header
// timeout; one that never finishes its TLS handshake too.
func TestServe_StalledClientsAreDropped(t *testing.T) {
	h := start(t, false, 100*time.Millisecond)
	c := h.dial(t)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\n")
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("stalled head: read %d, %v; want the server to close", n, err)
	}
	h = start(t, true, 100*time.Millisecond)
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	raw.Write([]byte{0x16, 0x03, 0x01}) // the start of a TLS record, nothing more
	if n, err := raw.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("stalled TLS handshake: read %d, %v; want the server to close", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Shutdown ends Serve while connections are still sending their heads,
// without waiting for the header timeout (goleak checks nothing is left).
func TestServe_ShutdownCutsShortHeadsBeingRead(t *testing.T) {
	h := start(t, false, time.Hour)
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		c := h.dial(t)
		io.WriteString(c, "GET /ws HTTP/1.1\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Read(make([]byte, 1))
		}()
	}
	// Let the server take them in before it stops.
	c := h.dial(t)
	io.WriteString(c, upgradeHead)
	<-h.seen
	h.stop(t)
	wg.Wait()
}

// The deadline the first request was read under does not follow the
// connection to net/http: on a server without a write timeout, an answer
// that takes longer than the header timeout still goes out.
func TestServe_HandedOffConnectionKeepsNoDeadline(t *testing.T) {
	// The header timeout leaves the head ample time to arrive under -race
	// on a busy machine; the answer waits past it.
	h := start(t, false, 500*time.Millisecond)
	c := h.dial(t)
	io.WriteString(c, "GET /other?wait=600ms HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "plain" {
		t.Fatalf("body %q", body)
	}
	<-h.seen
}

// failingOnce is a listener whose first Accept fails as a process out of
// file descriptors does.
type failingOnce struct {
	net.Listener
	once sync.Once
}

func (l *failingOnce) Accept() (net.Conn, error) {
	var err error
	l.once.Do(func() {
		err = &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	})
	if err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}

// Running out of descriptors pauses accepting; it does not end Serve.
func TestServe_OutOfDescriptorsIsNotTheEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	served := make(chan error, 1)
	go func() { served <- Serve(srv, &failingOnce{Listener: ln}, "/ws") }()
	defer func() {
		srv.Close()
		<-served
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("after a failed accept: %v", err)
	}
	resp.Body.Close()
}

package ws_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ws"
)

// captureConn passes writes through until capturing is on; then it keeps
// them, so the test decides how the bytes hit the socket.
type captureConn struct {
	net.Conn
	mu        sync.Mutex
	capturing bool
	buf       bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capturing {
		return c.buf.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *captureConn) capture(on bool) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.capturing = on
	out := bytes.Clone(c.buf.Bytes())
	c.buf.Reset()
	return out
}

// readNonblocking polls a non-blocking reader until it returns data or a
// non-would-block error, failing after a generous bound (a hang, not a
// measurement).
func readNonblocking(t *testing.T, r func([]byte) (int, error)) ([]byte, error) {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := r(buf)
		if n > 0 {
			return buf[:n], err
		}
		if err != nil && !ws.IsWouldBlock(err) {
			return nil, err
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no data within 10 s")
	return nil, nil
}

// TestTLSWouldBlockIsNotSticky checks the property the TLS read path rests
// on, against the real crypto/tls: after the wrapper reports "would block"
// (a net.Error with Timeout and Temporary true) the tls.Conn keeps working,
// including when the would-block hits in the middle of a record.
func TestTLSWouldBlockIsNotSticky(t *testing.T) {
	if !ws.PollSupported {
		t.Skip("non-blocking reads need the epoll path")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvCfg, _ := testTLS()
	tl := tls.NewListener(ws.WrapListener(ln), srvCfg)

	accepted := make(chan *tls.Conn, 1)
	go func() {
		c, err := tl.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c.(*tls.Conn)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &captureConn{Conn: raw}
	client := tls.Client(cc, clientTLSConfig())
	defer client.Close()

	handshakeDone := make(chan error, 1)
	go func() { handshakeDone <- client.Handshake() }()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()
	if err := server.Handshake(); err != nil { // blocking mode, as net/http does it
		t.Fatal(err)
	}
	if err := <-handshakeDone; err != nil {
		t.Fatal(err)
	}
	if !ws.SetNonblocking(server.NetConn()) {
		t.Fatalf("accepted connection is %T, not the WrapListener wrapper", server.NetConn())
	}

	// Nothing sent: would-block, reported as a timeout net.Error. TLS 1.3
	// session tickets sent by the server do not travel this way.
	_, err = server.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !ws.IsWouldBlock(err) {
		t.Fatalf("empty read: got %v, want a would-block timeout", err)
	}

	// Data after a would-block must still arrive.
	if _, err := client.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	got, err := readNonblocking(t, server.Read)
	if err != nil || string(got) != "first" {
		t.Fatalf("after would-block: got %q, %v", got, err)
	}

	// Half a record, then would-block, then the rest: the partial record
	// must survive inside tls.Conn.
	cc.capture(true)
	if _, err := client.Write([]byte("second, split mid-record")); err != nil {
		t.Fatal(err)
	}
	record := cc.capture(false)
	if _, err := raw.Write(record[:len(record)/2]); err != nil {
		t.Fatal(err)
	}
	sawWouldBlock := false
	for range 100 { // the half record may take a moment to arrive; keep asking
		n, err := server.Read(make([]byte, 100))
		if n > 0 {
			t.Fatalf("read %d bytes of an incomplete record", n)
		}
		if !ws.IsWouldBlock(err) {
			t.Fatalf("mid-record read: %v", err)
		}
		sawWouldBlock = true
		time.Sleep(time.Millisecond)
	}
	if !sawWouldBlock {
		t.Fatal("no would-block seen")
	}
	if _, err := raw.Write(record[len(record)/2:]); err != nil {
		t.Fatal(err)
	}
	got, err = readNonblocking(t, server.Read)
	if err != nil || string(got) != "second, split mid-record" {
		t.Fatalf("after mid-record would-block: got %q, %v", got, err)
	}

	// Two records in one TCP write: the second must be readable from the
	// tls.Conn's buffer without the socket becoming readable again.
	cc.capture(true)
	client.Write([]byte("third"))
	client.Write([]byte("fourth"))
	if _, err := raw.Write(cc.capture(false)); err != nil {
		t.Fatal(err)
	}
	got, err = readNonblocking(t, server.Read)
	if err != nil || string(got) != "third" {
		t.Fatalf("first of two records: got %q, %v", got, err)
	}
	buf := make([]byte, 100)
	n, err := server.Read(buf) // no waiting: already buffered in tls.Conn
	if err != nil || string(buf[:n]) != "fourth" {
		t.Fatalf("second of two records: got %q, %v", buf[:n], err)
	}
}

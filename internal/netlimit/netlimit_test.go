package netlimit_test

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/netlimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve accepts on l until it is closed, keeping what it accepts open.
func serve(t *testing.T, l *netlimit.Listener) (accepted func() []net.Conn) {
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return func() []net.Conn { mu.Lock(); defer mu.Unlock(); return append([]net.Conn(nil), conns...) }
}

func dialFrom(t *testing.T, addr net.Addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil // reset during connect: refused as well
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether the server closed c (EOF or reset) soon.
func refused(c net.Conn) bool {
	if c == nil {
		return true
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestListener_Caps(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := netlimit.Wrap(tcp, 3, 5, []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}, nil)
	accepted := serve(t, l)
	var a []net.Conn
	for range 4 {
		a = append(a, dialFrom(t, tcp.Addr(), "127.0.0.2"))
	}
	if !refused(a[3]) {
		t.Fatal("a fourth connection from one address was kept")
	}
	for _, c := range a[:3] {
		if refused(c) {
			t.Fatal("a connection within the cap was closed")
		}
	}
	// Another address has its own allowance, up to the total.
	b1, b2, b3 := dialFrom(t, tcp.Addr(), "127.0.0.3"), dialFrom(t, tcp.Addr(), "127.0.0.3"), dialFrom(t, tcp.Addr(), "127.0.0.4")
	if refused(b1) || refused(b2) || !refused(b3) {
		t.Fatal("per-address or total cap wrong")
	}
	if l.Open() != 5 {
		t.Fatalf("open = %d", l.Open())
	}
	// Closing frees the slot.
	accepted()[0].Close()
	accepted()[0].Close() // twice: released once
	if c := dialFrom(t, tcp.Addr(), "127.0.0.2"); refused(c) {
		t.Fatal("a freed slot was not reusable")
	}
	if l.Open() != 5 {
		t.Fatalf("open after close and reuse = %d", l.Open())
	}
}

func TestListener_ExemptProxy(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := netlimit.Wrap(tcp, 2, 0, []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}, nil)
	serve(t, l)
	for i := range 6 {
		if c := dialFrom(t, tcp.Addr(), "127.0.0.9"); refused(c) {
			t.Fatalf("connection %d from a trusted proxy refused", i)
		}
	}
}

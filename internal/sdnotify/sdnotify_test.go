package sdnotify

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotify(t *testing.T) {
	c, path := listen(t)
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": path}), 1)
	if err != nil || !n.Enabled() {
		t.Fatal(err)
	}
	if err := n.Notify("READY=1", "STATUS=serving"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "READY=1\nSTATUS=serving\n" {
		t.Fatalf("got %q", got)
	}
}

func TestWithoutSystemdIsNoop(t *testing.T) {
	n, err := FromEnv(env(nil), 1)
	if err != nil || n.Enabled() || n.Watchdog() != 0 {
		t.Fatal(n, err)
	}
	if err := n.Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	n.RunWatchdog(context.Background(), func() bool { return true }) // returns at once
}

func TestBadEnvironment(t *testing.T) {
	for _, e := range []map[string]string{
		{"NOTIFY_SOCKET": "relative/path"},
		{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "-5"},
		{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "lots"},
	} {
		if _, err := FromEnv(env(e), 1); err == nil {
			t.Errorf("%v accepted", e)
		}
	}
	// A watchdog meant for another process is not ours.
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7"}), 8)
	if err != nil || n.Watchdog() != 0 {
		t.Fatal(n.Watchdog(), err)
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	c, path := listen(t)
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000", "WATCHDOG_PID": "1"}), 1)
	if err != nil || n.Watchdog() != 40*time.Millisecond {
		t.Fatal(n.Watchdog(), err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.RunWatchdog(ctx, healthy.Load) }()
	for i := 0; i < 3; i++ {
		if got := read(t, c); got != "WATCHDOG=1\n" {
			t.Fatalf("got %q", got)
		}
	}
	healthy.Store(false)
	time.Sleep(60 * time.Millisecond) // a ping may have been in flight
	for i := 0; ; i++ {
		if i == 5 {
			t.Fatal("pings go on while unhealthy")
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b := make([]byte, 64)
		if _, err := c.Read(b); err != nil {
			if !strings.Contains(err.Error(), "timeout") {
				t.Fatal(err)
			}
			break
		}
	}
	cancel()
	<-done
}

func TestAbstractSocket(t *testing.T) {
	name := "unhidra-sdnotify-test-" + time.Now().Format("150405.000000000")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Skip("abstract sockets unavailable:", err)
	}
	defer c.Close()
	n, _ := FromEnv(env(map[string]string{"NOTIFY_SOCKET": "@" + name}), 1)
	if err := n.Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "READY=1\n" {
		t.Fatalf("got %q", got)
	}
}

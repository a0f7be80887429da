package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServe_SystemdNotify: under Type=notify the server reports READY=1
// once it listens, pings the watchdog, and says STOPPING=1 on shutdown.
func TestServe_SystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": strconv.Itoa(os.Getpid())}
	s := startServer(t, t.TempDir(), env)
	var got []string
	want := func(prefix string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, g := range got {
			if strings.HasPrefix(g, prefix) {
				return
			}
		}
		for time.Now().Before(deadline) {
			c.SetReadDeadline(deadline)
			b := make([]byte, 4096)
			n, err := c.Read(b)
			if err != nil {
				break
			}
			got = append(got, string(b[:n]))
			if strings.HasPrefix(string(b[:n]), prefix) {
				return
			}
		}
		t.Fatalf("no %q among %q", prefix, got)
	}
	want("READY=1\nSTATUS=serving on " + s.url)
	want("WATCHDOG=1")
	got = nil
	want("WATCHDOG=1") // and again
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	want("STOPPING=1")
}

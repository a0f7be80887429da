package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServe_RefusesReadableFiles: a 0644 database, a 0644 TLS key and a
// 0755 data directory each stop the server with a message naming the file
// and the fix.
func TestServe_RefusesReadableFiles(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"})
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var out syncBuffer
		return run(ctx, []string{"unhidra", "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--ml-workers", "0", "--system-bot=false"},
			envFrom(nil), strings.NewReader(""), &out, &out)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		fix  string
	}{
		{filepath.Join(dir, "unhidra.db"), 0o644, "chmod 600"},
		{filepath.Join(dir, "tls-key.pem"), 0o640, "chmod 600"},
		{filepath.Join(dir, "signing-keys.json"), 0o604, "chmod 600"},
		{dir, 0o755, "chmod 700"},
	} {
		orig, _ := os.Stat(c.path)
		os.Chmod(c.path, c.mode)
		err := try()
		if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.fix+" "+c.path) {
			t.Fatalf("mode %04o on %s: err = %v", c.mode, c.path, err)
		}
		os.Chmod(c.path, orig.Mode().Perm())
	}
	// Back to private: it starts again.
	startServer(t, dir, nil)
}

// TestServe_ForwardedFor: behind a trusted proxy on loopback, a client
// that writes its own X-Forwarded-For line (the proxy appends a second)
// or an unparsable hop gets neither loopback privileges nor its own
// throttle bucket.
func TestServe_ForwardedFor(t *testing.T) {
	s := startServer(t, t.TempDir(), nil, "--no-tls", "--trusted-proxies", "127.0.0.1/32",
		"--conn-rate-per-ip", "0.001", "--conn-burst-per-ip", "3")
	get := func(path string, lines ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+path, nil)
		for _, l := range lines {
			req.Header.Add("X-Forwarded-For", l)
		}
		if path == "/ws" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		res, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := get("/metrics"); st != 200 {
		t.Fatalf("/metrics from loopback without forwarding: %d", st)
	}
	for _, lines := range [][]string{{"127.0.0.1", "203.0.113.9"}, {"203.0.113.9, bogus"}, {"bogus"}, {"127.0.0.1, "}} {
		if st := get("/metrics", lines...); st != 401 {
			t.Errorf("/metrics with X-Forwarded-For %q: %d, want 401", lines, st)
		}
	}
	// The real client (the proxy's line) is throttled however it varies its own line.
	for i, want := range []int{401, 401, 401, 429, 429} {
		if st := get("/ws", "198.51.100."+string(rune('1'+i)), "203.0.113.9"); st != want {
			t.Errorf("handshake %d from 203.0.113.9: %d, want %d", i+1, st, want)
		}
	}
	// Unparsable hops share one bucket ("unknown").
	for i, want := range []int{401, 401, 401, 429} {
		if st := get("/ws", "junk-"+string(rune('a'+i))); st != want {
			t.Errorf("handshake %d with an unparsable hop: %d, want %d", i+1, st, want)
		}
	}
}

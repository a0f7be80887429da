package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:0", "localhost:6060", "127.0.0.9:1"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", ":6060", "10.0.0.1:6060", "example.com:6060", "127.0.0.1", "[::]:1"} {
		if err := checkLoopback(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestStartPprof_ServesProfilesOnLoopback(t *testing.T) {
	if _, err := startPprof("0.0.0.0:0", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a non-loopback address was accepted")
	}
	// Find a free port, then serve there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stop, err := startPprof(addr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), "goroutine profile") {
		t.Fatalf("status %d, body %.200s", res.StatusCode, b)
	}
}

func TestServeFlags_PprofOffByDefault(t *testing.T) {
	var c serveConfig
	fs := newFlagSet("serve", "serve", io.Discard)
	c.flags(fs)
	if f := fs.Lookup("pprof-listen"); f == nil || f.DefValue != "" {
		t.Fatalf("--pprof-listen default %v, want empty (off)", f)
	}
}

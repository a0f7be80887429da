package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/tlscert"
)

func TestBenchFleet(t *testing.T) {
	certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	var heartbeats atomic.Int64
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Sec-WebSocket-Protocol"), "unhidra_dk_") {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		c.Write(context.Background(), websocket.MessageText, []byte(`{"type":"welcome","identity":{"id":"d","kind":"device"}}`))
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if strings.Contains(string(data), `"heartbeat"`) {
				heartbeats.Add(1)
			}
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer func() { srv.CloseClientConnections(); srv.Close(); wg.Wait() }()

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, certPEM, 0o644)
	keys := filepath.Join(dir, "keys")
	var b strings.Builder
	for i := range 5 {
		fmt.Fprintf(&b, "unhidra_dk_d%d_secret%d\n", i, i)
	}
	os.WriteFile(keys, []byte(b.String()), 0o600)
	url := "wss://" + srv.Listener.Addr().String() + "/ws"

	stdout, stderr, err := runCLI(t, map[string]string{"UNHIDRA_HEARTBEAT_INTERVAL": "200ms"}, "", "bench", "fleet", "-n", "5",
		"--url", url, "--keys-file", keys, "--ca-file", ca, "--duration", "1500ms", "--report-every", "500ms")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "final devices=5 connected=5") || strings.Count(stdout, "t=") < 2 || heartbeats.Load() < 5*5 {
		t.Errorf("%d heartbeats; output:\n%s", heartbeats.Load(), stdout)
	}
	if strings.Contains(stdout+stderr, "secret") {
		t.Errorf("a key leaked:\n%s%s", stdout, stderr)
	}

	for name, args := range map[string][]string{
		"no tool":      {"bench"},
		"unknown tool": {"bench", "storm"},
		"no url":       {"bench", "fleet", "--keys-file", keys},
		"too many":     {"bench", "fleet", "-n", "20000", "--url", url, "--keys-file", keys},
		"few keys":     {"bench", "fleet", "-n", "6", "--url", url, "--keys-file", keys},
		"bad source":   {"bench", "fleet", "--url", url, "--keys-file", keys, "--source-addrs", "127.0.0.1,nope"},
	} {
		if _, _, err := runCLI(t, nil, "", args...); err == nil || exitCode(err) != 2 {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

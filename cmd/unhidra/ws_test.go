package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/protocol"
)

// TestServe_WebSocketAndDrain goes through the real listener stack (TCP →
// the transport's wrapper → TLS → HTTP → upgrade) and checks that stopping
// the server drains connections with the reconnect code.
func TestServe_WebSocketAndDrain(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	s := startServer(t, dir, env, "--drain-window", "200ms")
	st, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	if st != 200 {
		t.Fatalf("login: %d %v", st, body)
	}
	token := body["access_token"].(string)
	wsURL := "wss" + strings.TrimPrefix(s.url, "https") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: s.client, Subprotocols: []string{protocol.Subprotocol, "bearer." + token}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("Sec-WebSocket-Protocol") != protocol.Subprotocol {
		t.Fatalf("echo %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	_, data, err := c.Read(ctx)
	var w protocol.Welcome
	if err != nil || json.Unmarshal(data, &w) != nil || w.Identity.Name != "admin" {
		t.Fatalf("welcome: %v %s", err, data)
	}

	// The gateway's metrics are exported (loopback may read them).
	res, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`unhidra_gateway_connections{kind="person"} 1`, "unhidra_gateway_upgrades_total 1", "unhidra_gateway_handshake_seconds_bucket"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Listing connections as an administrator.
	req, _ := http.NewRequest("GET", s.url+"/api/v1/admin/connections", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if st, body := s.do(t, req); st != 200 || body["count"].(float64) != 1 {
		t.Fatalf("connections: %d %v", st, body)
	}

	// Stop the server: the client is told to reconnect (4000).
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	err = readUntilClosed(ctx, c)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || int(ce.Code) != protocol.CloseShutdown {
		t.Fatalf("on shutdown the client got %v, want close %d", err, protocol.CloseShutdown)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestBenchConns(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	s := startServer(t, dir, env, "--max-conns-per-identity", "100", "--conn-burst-per-identity", "1000", "--drain-window", "100ms")
	out, errOut, err := runCLI(t, map[string]string{"UNHIDRA_BENCH_PASSWORD": "correct horse battery"}, "",
		"bench", "conns", "--url", s.url, "--ca-file", dir+"/tls-cert.pem", "--user", "admin", "-n", "50", "--source-addrs", "3", "--hold", "100ms")
	if err != nil {
		t.Fatalf("bench conns: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "connected 50, failed 0, dropped during hold 0") || !strings.Contains(out, "server per connection: RSS") {
		t.Fatalf("output:\n%s", out)
	}
	// The per-identity cap is enforced for the bench like for anyone.
	out, _, _ = runCLI(t, map[string]string{"UNHIDRA_BENCH_PASSWORD": "correct horse battery"}, "",
		"bench", "conns", "--url", s.url, "--ca-file", dir+"/tls-cert.pem", "--user", "admin", "-n", "120", "--hold", "0s")
	if !strings.Contains(out, "connected 100, failed 20") {
		t.Fatalf("cap not applied:\n%s", out)
	}
}

// A client that opens a connection and dribbles half a request is cut off
// after the handshake timeout instead of holding a slot forever.
func TestServe_SlowlorisIsCutOff(t *testing.T) {
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			extra := []string{"--handshake-timeout", "300ms"}
			if mode == "plain" {
				extra = append(extra, "--no-tls")
			}
			s := startServer(t, t.TempDir(), map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}, extra...)
			addr := strings.TrimPrefix(strings.TrimPrefix(s.url, "https://"), "http://")
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if mode == "plain" {
				io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n") // never finished
			} // in TLS mode the client never even starts the handshake
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1024)
			for {
				if _, err := conn.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the server kept a slow client past its handshake timeout")
					}
					return // closed by the server
				}
			}
		})
	}
}

// readUntilClosed reads (and drops) frames until the connection ends.
func readUntilClosed(ctx context.Context, c *websocket.Conn) error {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
	}
}

func TestBenchFanout(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"},
		"--max-conns-per-identity", "100", "--conn-burst-per-identity", "1000", "--drain-window", "100ms", "--send-rate", "1000", "--send-burst", "1000")
	out, errOut, err := runCLI(t, map[string]string{"UNHIDRA_BENCH_PASSWORD": "correct horse battery"}, "",
		"bench", "fanout", "--url", s.url, "--ca-file", dir+"/tls-cert.pem", "--user", "admin",
		"--receivers", "10", "--senders", "2", "--rate", "50", "--duration", "1s")
	if err != nil {
		t.Fatalf("bench fanout: %v\n%s\n%s", err, out, errOut)
	}
	// 50/s for 1 s: about 50 stored, each delivered to 10 listeners.
	if !strings.Contains(out, "failed 0") || !strings.Contains(out, "(100.0% of expected)") || !strings.Contains(out, "delivery latency p50") {
		t.Fatalf("output:\n%s", out)
	}
}

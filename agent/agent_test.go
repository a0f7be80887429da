package agent_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/internal/tlscert"
)

func TestBackoff_Delay(t *testing.T) {
	var b agent.Backoff // the seed's schedule
	bases := []time.Duration{5, 10, 20, 40, 60, 60, 60}
	rng := rand.New(rand.NewPCG(1, 2))
	for n, base := range bases {
		base *= time.Second
		lo, hi := time.Duration(float64(base)*0.7), min(time.Duration(float64(base)*1.3), 60*time.Second)
		minSeen, maxSeen := time.Duration(math.MaxInt64), time.Duration(0)
		distinct := map[time.Duration]bool{}
		for range 2000 {
			d := b.Delay(n, rng.Float64)
			if d < lo || d > hi {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", n, d, lo, hi)
			}
			minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
			distinct[d] = true
		}
		// The jitter must actually spread: close to the whole ±30 % band
		// (cut at the 60 s cap, where half the draws land on the cap).
		wantDistinct := 1900
		if hi == 60*time.Second && base == 60*time.Second {
			wantDistinct = 900
		}
		if spread := float64(maxSeen-minSeen) / float64(hi-lo); spread < 0.95 || len(distinct) < wantDistinct {
			t.Errorf("attempt %d: spread %.2f of the band, %d distinct values", n, spread, len(distinct))
		}
	}
	// Fixed random values: exact arithmetic at both ends of the band.
	for _, c := range []struct {
		n    int
		r    float64
		want time.Duration
	}{{0, 0, 3500 * time.Millisecond}, {0, 0.5, 5 * time.Second}, {1, 0.999999999, 13 * time.Second}, {10, 0.5, 60 * time.Second}, {1000, 0.5, 60 * time.Second}, {4, 0.999999999, 60 * time.Second}, {10, 0, 42 * time.Second}, {-3, 0.5, 5 * time.Second}} {
		got := b.Delay(c.n, func() float64 { return c.r })
		if diff := got - c.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("Delay(%d, %v) = %v, want %v", c.n, c.r, got, c.want)
		}
	}
	// A broken random source cannot produce absurd waits.
	for _, r := range []float64{math.NaN(), -1, 1, 7, math.Inf(1)} {
		if got := b.Delay(2, func() float64 { return r }); got != 20*time.Second {
			t.Errorf("rand %v: delay %v, want 20s", r, got)
		}
	}
	// Full jitter: uniform in [0, base), cap honoured.
	fj := agent.Backoff{FullJitter: true, Initial: time.Second, Max: 8 * time.Second, Multiplier: 3}
	var maxSeen time.Duration
	for range 5000 {
		d := fj.Delay(5, rng.Float64)
		if d < 0 || d >= 8*time.Second {
			t.Fatalf("full jitter %v outside [0, 8s)", d)
		}
		maxSeen = max(maxSeen, d)
	}
	if maxSeen < 7*time.Second {
		t.Errorf("full jitter never came near the cap: max %v", maxSeen)
	}
	// No jitter at all when asked.
	if d := (agent.Backoff{Jitter: -1}).Delay(1, rng.Float64); d != 10*time.Second {
		t.Errorf("no-jitter delay %v", d)
	}
}

// The reconnect schedule as the agent lives it: growing waits while
// connections fail, back to the initial delay after a stable connection.
func TestAgent_BackoffResetAfterStability(t *testing.T) {
	s := newTestServer(t)
	ra := startAgent(t, s, nil)
	for i, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		c := s.accept(t)
		c.readType("heartbeat")
		c.ws.Close(4000, "server shutting down")
		ra.clk.waitTimerExactly(t, fmt.Sprintf("reconnect %d", i), want)
		ra.clk.Advance(want)
	}
	// This one lasts: the stability window passes while connected.
	c := s.accept(t)
	c.readType("heartbeat")
	ra.clk.waitTimerExactly(t, "heartbeat", 60*time.Second)
	ra.clk.Advance(60 * time.Second)
	c.readType("heartbeat")
	c.ws.Close(4002, "overloaded")
	ra.clk.waitTimerExactly(t, "reconnect after a stable connection", 5*time.Second)
	ra.clk.Advance(5 * time.Second)
	s.accept(t).readType("heartbeat")
}

func TestAgent_Handshake(t *testing.T) {
	t.Run("WholeHeader", func(t *testing.T) {
		s := newTestServer(t)
		startAgent(t, s, nil)
		c := s.accept(t)
		r := s.request(0)
		if got := r.Header.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != testKey {
			t.Errorf("Sec-WebSocket-Protocol = %q, want exactly the key", got)
		}
		if r.URL.Path != "/ws" || r.URL.RawQuery != "" || strings.Contains(r.URL.String(), testKey) {
			t.Errorf("request URL %q", r.URL)
		}
		for name, vals := range r.Header {
			if name != "Sec-Websocket-Protocol" && strings.Contains(strings.Join(vals, ","), testKey) {
				t.Errorf("key in header %s", name)
			}
		}
		if c.ws.Subprotocol() != "" {
			t.Errorf("subprotocol %q negotiated", c.ws.Subprotocol())
		}
		hb := c.readType("heartbeat")
		if hb["device_id"] != "dev_abc" {
			t.Errorf("device_id = %v, want the welcome's identity id", hb["device_id"])
		}
	})
	t.Run("WithSubprotocol", func(t *testing.T) {
		s := newTestServer(t)
		s.echo = []string{"unhidra.v1"}
		startAgent(t, s, func(c *agent.Config) { c.OfferSubprotocol = true })
		c := s.accept(t)
		if got := s.request(0).Header.Get("Sec-WebSocket-Protocol"); got != testKey+", unhidra.v1" {
			t.Errorf("Sec-WebSocket-Protocol = %q", got)
		}
		if c.ws.Subprotocol() != "unhidra.v1" {
			t.Errorf("negotiated %q", c.ws.Subprotocol())
		}
		c.readType("heartbeat")
	})
	t.Run("ServerEchoesKey", func(t *testing.T) {
		// A server that echoes the credential is refused (and the key is
		// never logged, which every test's cleanup checks).
		s := newTestServer(t)
		s.echo = []string{testKey}
		ra := startAgent(t, s, nil)
		ra.clk.waitTimer(t, "reconnect", func(d time.Duration) bool { return d == 5*time.Second })
		if !strings.Contains(ra.logs.String(), "unexpected subprotocol") {
			t.Errorf("logs: %s", ra.logs.String())
		}
	})
	t.Run("KeyRedactedFromServerText", func(t *testing.T) {
		s := newTestServer(t)
		s.refuse = func(n int, w http.ResponseWriter) bool {
			w.Header().Set("Retry-After", "7")
			http.Error(w, `{"error":{"code":"unavailable","message":"bad key `+testKey+`"}}`, http.StatusServiceUnavailable)
			return true
		}
		ra := startAgent(t, s, nil)
		ra.clk.waitTimerExactly(t, "Retry-After wait", 7*time.Second)
		if !strings.Contains(ra.logs.String(), "[redacted]") {
			t.Errorf("expected the echoed key to be redacted in: %s", ra.logs.String())
		}
	})
}

func TestAgent_Heartbeat(t *testing.T) {
	t.Run("ShapeAndCadence", func(t *testing.T) {
		s := newTestServer(t)
		uptime := 1000 * time.Second
		ra := startAgent(t, s, func(c *agent.Config) {
			c.Uptime = func() (time.Duration, error) { uptime += 61 * time.Second; return uptime, nil }
			c.PingInterval = time.Hour // pings and pongs are tested on their own
		})
		c := s.accept(t)
		hb := c.readJSON()
		want := map[string]any{"type": "heartbeat", "device_id": "dev_abc", "ts": float64(1061), "free_heap": float64(180000)}
		if fmtAck(hb) != fmtAck(want) {
			t.Fatalf("heartbeat %v, want %v", hb, want)
		}
		for i := range 3 {
			ra.clk.waitTimerExactly(t, "heartbeat", 60*time.Second)
			ra.clk.Advance(59 * time.Second)
			// Nothing before the interval is up: the next frame must be
			// the one after the last second.
			ra.clk.Advance(time.Second)
			hb := c.readJSON()
			if hb["type"] != "heartbeat" || hb["ts"] != float64(1061+61*(i+1)) {
				t.Fatalf("heartbeat %d: %v", i, hb)
			}
		}
	})
	t.Run("WelcomeInterval", func(t *testing.T) {
		s := newTestServer(t)
		s.welcome = func(int) map[string]any {
			return map[string]any{"type": "welcome", "identity": map[string]any{"id": "dev_w", "kind": "device"}, "heartbeat_interval": 15}
		}
		ra := startAgent(t, s, nil)
		c := s.accept(t)
		c.readType("heartbeat")
		ra.clk.waitTimerExactly(t, "welcome's heartbeat interval", 15*time.Second)
	})
	t.Run("ConfigOverridesWelcome", func(t *testing.T) {
		s := newTestServer(t)
		ra := startAgent(t, s, func(c *agent.Config) { c.HeartbeatInterval = 90 * time.Second; c.DeviceID = "esp32-01" })
		c := s.accept(t)
		if hb := c.readType("heartbeat"); hb["device_id"] != "esp32-01" {
			t.Errorf("device_id %v", hb["device_id"])
		}
		ra.clk.waitTimerExactly(t, "configured heartbeat interval", 90*time.Second)
	})
	t.Run("HostileWelcomeInterval", func(t *testing.T) {
		for _, v := range []any{0, -5, 1e12, "60", 0.001} {
			s := newTestServer(t)
			s.welcome = func(int) map[string]any {
				return map[string]any{"type": "welcome", "identity": map[string]any{"id": "d", "kind": "device"}, "heartbeat_interval": v}
			}
			ra := startAgent(t, s, nil)
			c := s.accept(t)
			c.readType("heartbeat")
			ra.clk.waitTimerExactly(t, fmt.Sprintf("default interval for %v", v), 60*time.Second)
			ra.cancel()
		}
	})
	t.Run("SetHeartbeatCommand", func(t *testing.T) {
		s := newTestServer(t)
		ra := startAgent(t, s, nil)
		c := s.accept(t)
		c.readType("heartbeat")
		if a := c.command("cmd_1", "set-heartbeat", map[string]any{"interval": 5}); a["ok"] != true {
			t.Fatalf("ack %v", a)
		}
		ra.clk.waitTimerExactly(t, "new heartbeat interval", 5*time.Second)
		ra.clk.Advance(5 * time.Second)
		c.readType("heartbeat")
		for _, bad := range []any{map[string]any{"interval": 0}, map[string]any{"interval": 1e9}, map[string]any{"interval": "5"}, map[string]any{}, []int{1}} {
			if a := c.command("cmd_bad", "set-heartbeat", bad); a["ok"] != false || a["error"] == "" {
				t.Errorf("set-heartbeat %v: %v", bad, a)
			}
		}
	})
}

// The agent pings at the welcome's ping_interval (25 s here) and drops a link
// silent for twice that.
func TestAgent_DeadLink(t *testing.T) {
	s := newTestServer(t)
	s.silent = true // the server never reads: pings go unanswered
	ra := startAgent(t, s, nil)
	s.accept(t)
	ra.clk.waitTimerExactly(t, "ping", 25*time.Second)
	ra.clk.Advance(25 * time.Second) // ping sent, no pong
	ra.clk.waitTimerExactly(t, "second ping", 25*time.Second)
	if got := s.requestCount(); got != 1 {
		t.Fatalf("reconnected too early: %d requests", got)
	}
	ra.clk.Advance(25 * time.Second) // 50 s of silence (2× the welcome's 25 s ping interval): dead
	ra.clk.waitTimerExactly(t, "reconnect after a dead link", 5*time.Second)
	if !strings.Contains(ra.logs.String(), "dead link") {
		t.Errorf("logs do not mention the dead link: %s", ra.logs.String())
	}
	s.mu.Lock()
	s.silent = false
	s.mu.Unlock()
	ra.clk.Advance(5 * time.Second)
	s.accept(t).readType("heartbeat")
}

// A live server answers pings, so the link is not declared dead however
// long it stays otherwise quiet.
func TestAgent_PongKeepsLinkAlive(t *testing.T) {
	s := newTestServer(t)
	ra := startAgent(t, s, func(c *agent.Config) { c.HeartbeatInterval = time.Hour })
	c := s.accept(t)
	for i := range 6 {
		ra.clk.waitTimerExactly(t, "ping", 25*time.Second)
		ra.clk.Advance(25 * time.Second)
		c.waitPings(int64(i + 1))
		// Time moves on only after the pong is back.
		deadline := time.Now().Add(waitFor)
		for strings.Count(ra.logs.String(), `"msg":"pong"`) < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("pong %d never arrived", i+1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	if s.requestCount() != 1 || strings.Contains(ra.logs.String(), "dead link") {
		t.Fatalf("link declared dead though pongs came: %s", ra.logs.String())
	}
}

func TestAgent_CloseCodes(t *testing.T) {
	for _, code := range []int{4500, 4501, 4502, 4999, 1008} {
		t.Run(fmt.Sprintf("Terminal%d", code), func(t *testing.T) {
			s := newTestServer(t)
			ra := startAgent(t, s, nil)
			c := s.accept(t)
			c.readType("heartbeat")
			c.ws.Close(websocket.StatusCode(code), "revoked")
			err := ra.wait(t)
			var te *agent.TerminalError
			if !errors.As(err, &te) || te.Code != code || te.Reason != "revoked" {
				t.Fatalf("Run returned %v, want a TerminalError with code %d", err, code)
			}
			if s.requestCount() != 1 {
				t.Errorf("%d connection attempts after a terminal close", s.requestCount())
			}
		})
	}
	for _, code := range []int{4000, 4001, 4003, 4006, 4499, 1001, 1011} {
		t.Run(fmt.Sprintf("Reconnect%d", code), func(t *testing.T) {
			s := newTestServer(t)
			ra := startAgent(t, s, nil)
			c := s.accept(t)
			c.readType("heartbeat")
			c.ws.Close(websocket.StatusCode(code), "bye")
			ra.clk.waitTimerExactly(t, "reconnect", 5*time.Second)
			ra.clk.Advance(5 * time.Second)
			s.accept(t).readType("heartbeat")
		})
	}
	t.Run("HandshakeUnauthorizedIsTerminal", func(t *testing.T) {
		s := newTestServer(t)
		s.refuse = func(n int, w http.ResponseWriter) bool {
			http.Error(w, `{"error":{"code":"unauthorized","message":"Unknown or revoked device key."}}`, http.StatusUnauthorized)
			return true
		}
		ra := startAgent(t, s, nil)
		var te *agent.TerminalError
		if err := ra.wait(t); !errors.As(err, &te) || te.Status != 401 || te.Reason != "Unknown or revoked device key." {
			t.Fatalf("Run returned %v", err)
		}
	})
	t.Run("HandshakeUnauthorizedRetriedWhenAsked", func(t *testing.T) {
		s := newTestServer(t)
		s.refuse = func(n int, w http.ResponseWriter) bool {
			if n == 0 {
				http.Error(w, "no", http.StatusUnauthorized)
				return true
			}
			return false
		}
		ra := startAgent(t, s, func(c *agent.Config) { c.RetryUnauthorized = true })
		ra.clk.waitTimerExactly(t, "reconnect", 5*time.Second)
		ra.clk.Advance(5 * time.Second)
		s.accept(t).readType("heartbeat")
	})
	t.Run("StopClosesGoingAway", func(t *testing.T) {
		s := newTestServer(t)
		ra := startAgent(t, s, nil)
		c := s.accept(t)
		c.readType("heartbeat")
		ra.cancel()
		if err := ra.wait(t); err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		if err := c.closed(); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("server saw %v, want close 1001", err)
		}
	})
}

func TestAgent_RetryAfter(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		header string
		want   time.Duration
	}{
		{"503Seconds", 503, "120", 120 * time.Second},
		{"429Seconds", 429, "30", 30 * time.Second},
		{"HTTPDate", 503, "", 0}, // set below, relative to the fake clock
		{"Huge", 429, "99999999", 15 * time.Minute},
		{"Garbage", 503, "soon", 5 * time.Second},
		{"Negative", 503, "-5", 5 * time.Second},
		{"ShorterThanBackoff", 503, "1", 5 * time.Second},
		{"IgnoredOn500", 500, "120", 5 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t)
			header := c.header
			want := c.want
			if c.name == "HTTPDate" {
				// The fake clock starts at 2026-01-01 00:00:00 UTC.
				header, want = "Thu, 01 Jan 2026 00:03:00 GMT", 3*time.Minute
			}
			s.refuse = func(n int, w http.ResponseWriter) bool {
				if n > 0 {
					return false
				}
				w.Header().Set("Retry-After", header)
				w.WriteHeader(c.status)
				return true
			}
			ra := startAgent(t, s, nil)
			ra.clk.waitTimerExactly(t, "wait before retry", want)
			if s.requestCount() != 1 {
				t.Fatalf("retried before the wait")
			}
			ra.clk.Advance(want)
			s.accept(t).readType("heartbeat")
		})
	}
}

func TestAgent_TLS(t *testing.T) {
	t.Run("CustomCA", func(t *testing.T) {
		s := newTestServer(t)
		startAgent(t, s, nil) // RootCAs = the test CA
		s.accept(t).readType("heartbeat")
	})
	t.Run("UnknownCARefused", func(t *testing.T) {
		s := newTestServer(t)
		ra := startAgent(t, s, func(c *agent.Config) { c.RootCAs = nil }) // system roots
		ra.clk.waitTimerExactly(t, "reconnect", 5*time.Second)
		if s.requestCount() != 0 {
			t.Fatal("handshake reached the server without a trusted certificate")
		}
		if !strings.Contains(ra.logs.String(), "certificate") {
			t.Errorf("logs: %s", ra.logs.String())
		}
	})
	t.Run("PinnedWithoutCA", func(t *testing.T) {
		s := newTestServer(t)
		pin, err := agent.ParsePin(tlscert.Fingerprint(s.certDER))
		if err != nil {
			t.Fatal(err)
		}
		startAgent(t, s, func(c *agent.Config) { c.RootCAs = nil; c.PinSHA256 = pin })
		s.accept(t).readType("heartbeat")
	})
	t.Run("PinnedAndCA", func(t *testing.T) {
		s := newTestServer(t)
		pin, _ := agent.ParsePin(tlscert.Fingerprint(s.certDER))
		startAgent(t, s, func(c *agent.Config) { c.PinSHA256 = pin })
		s.accept(t).readType("heartbeat")
	})
	t.Run("WrongPinRefused", func(t *testing.T) {
		for _, withCA := range []bool{false, true} {
			s := newTestServer(t)
			pin, _ := agent.ParsePin(tlscert.Fingerprint(s.certDER))
			pin[31] ^= 1
			ra := startAgent(t, s, func(c *agent.Config) {
				c.PinSHA256 = pin
				if !withCA {
					c.RootCAs = nil
				}
			})
			ra.clk.waitTimerExactly(t, "reconnect", 5*time.Second)
			if s.requestCount() != 0 {
				t.Fatalf("withCA=%v: handshake reached the server with a wrong pin", withCA)
			}
			if !strings.Contains(ra.logs.String(), "pinned") {
				t.Errorf("logs: %s", ra.logs.String())
			}
			ra.cancel()
		}
	})
}

func TestParsePin(t *testing.T) {
	der := []byte("certificate")
	colon := tlscert.Fingerprint(der)
	a, err := agent.ParsePin(colon)
	if err != nil {
		t.Fatal(err)
	}
	b, err := agent.ParsePin(strings.ToLower(strings.ReplaceAll(colon, ":", "")))
	if err != nil || hex.EncodeToString(a) != hex.EncodeToString(b) {
		t.Fatalf("plain hex form: %v", err)
	}
	for _, bad := range []string{"", "AB:CD", strings.Repeat("Z", 64), strings.Repeat("0", 66), colon + ":00"} {
		if _, err := agent.ParsePin(bad); !errors.Is(err, agent.ErrConfig) {
			t.Errorf("ParsePin(%q) = %v", bad, err)
		}
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	if k, err := agent.LoadKeyFile(write("ok", testKey+"\n", 0o600)); err != nil || k != testKey {
		t.Fatalf("LoadKeyFile = %q, %v", k, err)
	}
	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"world-readable": {testKey, 0o644},
		"empty":          {"\n", 0o600},
		"space inside":   {"unhidra_dk_a b", 0o600},
		"comma":          {"unhidra_dk_a,unhidra.v1", 0o600},
		"huge":           {strings.Repeat("k", 5000), 0o600},
		"newline inside": {"a\nb", 0o600},
	} {
		_, err := agent.LoadKeyFile(write(name, c.content, c.mode))
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), c.content) && c.content != "\n" {
			t.Errorf("%s: error echoes the file: %v", name, err)
		}
	}
	if _, err := agent.LoadKeyFile(dir); err == nil {
		t.Error("directory accepted")
	}
}

func TestNew_Hostile(t *testing.T) {
	base := agent.Config{URL: "wss://example.com/ws", Key: testKey}
	notExec := filepath.Join(t.TempDir(), "hook")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	if _, err := agent.New(base); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	cases := map[string]func(*agent.Config){
		"no key":           func(c *agent.Config) { c.Key = "" },
		"key with space":   func(c *agent.Config) { c.Key = "a b" },
		"key is v1":        func(c *agent.Config) { c.Key = "unhidra.v1" },
		"plain ws":         func(c *agent.Config) { c.URL = "ws://example.com/ws" },
		"key in query":     func(c *agent.Config) { c.URL = "wss://example.com/ws?token=" + testKey },
		"user info":        func(c *agent.Config) { c.URL = "wss://u:p@example.com/ws" },
		"no host":          func(c *agent.Config) { c.URL = "wss:///ws" },
		"http scheme":      func(c *agent.Config) { c.URL = "https://example.com/ws" },
		"huge URL":         func(c *agent.Config) { c.URL = "wss://example.com/" + strings.Repeat("a", 3000) },
		"tiny heartbeat":   func(c *agent.Config) { c.HeartbeatInterval = time.Millisecond },
		"negative ping":    func(c *agent.Config) { c.PingInterval = -time.Second },
		"dead <= ping":     func(c *agent.Config) { c.PingInterval, c.DeadAfter = 30*time.Second, 30*time.Second },
		"frame limit":      func(c *agent.Config) { c.MaxFrameBytes = 1 << 40 },
		"output limit":     func(c *agent.Config) { c.MaxOutputBytes = -1 },
		"commands":         func(c *agent.Config) { c.MaxConcurrentCommands = 1000 },
		"pin length":       func(c *agent.Config) { c.PinSHA256 = []byte{1, 2, 3} },
		"relative hook":    func(c *agent.Config) { c.CommandHook = "hook.sh" },
		"missing hook":     func(c *agent.Config) { c.CommandHook = "/nonexistent/hook" },
		"hook not exec":    func(c *agent.Config) { c.CommandHook = notExec },
		"telemetry alone":  func(c *agent.Config) { c.TelemetryFile = "/tmp/x" },
		"telemetry nosrc":  func(c *agent.Config) { c.TelemetryInterval = time.Minute },
		"device id quote":  func(c *agent.Config) { c.DeviceID = `a"b` },
		"device id long":   func(c *agent.Config) { c.DeviceID = strings.Repeat("d", 200) },
		"backoff negative": func(c *agent.Config) { c.Backoff.Initial = -time.Second },
		"backoff huge":     func(c *agent.Config) { c.Backoff.Multiplier = 1e9 },
	}
	for name, edit := range cases {
		c := base
		edit(&c)
		_, err := agent.New(c)
		if !errors.Is(err, agent.ErrConfig) && !(name == "missing hook" && err != nil) {
			t.Errorf("%s: New = %v, want ErrConfig", name, err)
		}
		if err != nil && strings.Contains(err.Error(), testKey) {
			t.Errorf("%s: error shows the key: %v", name, err)
		}
	}
}

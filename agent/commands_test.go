package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra/agent"
)

// writeScript writes an executable shell script for the hook tests.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgent_Commands(t *testing.T) {
	s := newTestServer(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	hook := writeScript(t, "PIDFILE="+pidFile+"\n"+`
case "$1" in
echo) cat ;;
config) [ "$UNHIDRA_COMMAND_TYPE" = config ] && cat ;;
args) printf '{"argc":%d,"arg":"%s","cmd":"%s","id":"%s","type":"%s"}' "$#" "$1" "$UNHIDRA_COMMAND" "$UNHIDRA_COMMAND_ID" "$UNHIDRA_COMMAND_TYPE" ;;
env) env ;;
text) echo "plain text" ;;
fail) echo "disk on fire" >&2; exit 3 ;;
slow) sleep 30 & echo $! > "$PIDFILE"; wait ;;
flood) head -c 200000 /dev/zero | tr '\0' 'x' ;;
*) echo "unexpected $1" >&2; exit 9 ;;
esac`)
	var rebooted atomic.Int32
	ra := startAgent(t, s, func(c *agent.Config) {
		c.CommandHook = hook
		c.CommandTimeout = 2 * time.Second
		c.MaxOutputBytes = 4096
		c.AllowReboot = true
		c.Reboot = func(context.Context) error { rebooted.Add(1); return nil }
	})
	if err := ra.Handle("custom", func(ctx context.Context, p json.RawMessage) (any, error) {
		var v struct{ N int }
		if err := json.Unmarshal(p, &v); err != nil {
			return nil, err
		}
		return map[string]int{"double": 2 * v.N}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ra.Handle("fails", func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("no sensor") })
	ra.Handle("panics", func(context.Context, json.RawMessage) (any, error) { panic("boom") })
	ra.Handle("big", func(context.Context, json.RawMessage) (any, error) { return strings.Repeat("b", 10000), nil })
	for _, bad := range []string{"", "-x", "a b", "a;b", strings.Repeat("n", 65), ".hidden"} {
		if err := ra.Handle(bad, func(context.Context, json.RawMessage) (any, error) { return nil, nil }); err == nil {
			t.Errorf("Handle(%q) accepted", bad)
		}
	}
	c := s.accept(t)
	c.readType("heartbeat")

	check := func(name string, params any, ok bool, want string) map[string]any {
		t.Helper()
		a := c.command("cmd_"+name, name, params)
		if a["ok"] != ok {
			t.Errorf("%s: ack %v, want ok=%v", name, a, ok)
		}
		got := a["error"]
		if ok {
			b, _ := json.Marshal(a["result"])
			got = string(b)
		}
		if s, _ := got.(string); !strings.Contains(s, want) {
			t.Errorf("%s: got %v, want it to contain %q", name, got, want)
		}
		return a
	}
	check("ping", nil, true, `"pong"`)
	check("uptime", nil, true, `{"uptime_s":1234}`)
	check("meminfo", nil, true, `{"free_heap":180000}`)
	check("custom", map[string]int{"N": 21}, true, `{"double":42}`)
	check("fails", nil, false, "no sensor")
	check("panics", nil, false, "handler failed")
	check("big", nil, false, "result larger than 4096 bytes")
	check("echo", map[string]any{"led": "on", "level": 3}, true, `{"led":"on","level":3}`)
	check("args", nil, true, `{"arg":"args","argc":1,"cmd":"args","id":"cmd_args","type":"command"}`)
	check("text", nil, true, `"plain text"`)
	check("fail", nil, false, "exit status 3: disk on fire")
	check("flood", nil, false, "output exceeds the limit of 4096 bytes")
	start := time.Now()
	check("slow", nil, false, "timed out")
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("timed-out hook took %v", took)
	}
	// The hook's child was killed with it (its whole process group).
	if b, err := os.ReadFile(pidFile); err != nil {
		t.Errorf("the slow hook did not start its child: %v", err)
	} else if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid <= 0 || processAlive(pid) {
		t.Errorf("the hook's child %d outlived the timeout", pid)
	}
	// The hook's environment is minimal: never the agent's secrets.
	os.Setenv("UNHIDRA_DEVICE_KEY", testKey)
	defer os.Unsetenv("UNHIDRA_DEVICE_KEY")
	env := check("env", nil, true, "UNHIDRA_COMMAND=env")
	if b, _ := json.Marshal(env); strings.Contains(string(b), testKey) || strings.Contains(string(b), "UNHIDRA_DEVICE_KEY") {
		t.Errorf("the hook saw the key: %s", b)
	}
	check("reboot", nil, true, "rebooting")
	deadline := time.Now().Add(waitFor)
	for rebooted.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if rebooted.Load() != 1 {
		t.Error("reboot not called after the ack")
	}

	// A config or ota frame without a command goes to the handler of its type.
	c.send(map[string]any{"type": "config", "id": "cfg_1", "params": map[string]any{"a": 1}})
	if a := c.readType("ack"); a["id"] != "cfg_1" || a["ok"] != true || fmtAck(a["result"]) != fmtAck(map[string]any{"a": float64(1)}) {
		t.Errorf("config frame: %v", a)
	}
}

func TestAgent_CommandsHostile(t *testing.T) {
	s := newTestServer(t)
	base := s.welcome
	s.welcome = func(n int) map[string]any {
		w := base(n)
		w["limits"] = map[string]any{"command_window": 2}
		return w
	}
	ra := startAgent(t, s, func(c *agent.Config) { c.MaxConcurrentCommands = 1; c.MaxFrameBytes = 4096 })
	block := make(chan struct{})
	ra.Handle("block", func(ctx context.Context, _ json.RawMessage) (any, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return "done", nil
	})
	c := s.accept(t)
	c.readType("heartbeat")
	for name, id := range map[string]string{
		"; rm -rf /":            "h1",
		"--help":                "h2",
		"../../bin/sh":          "h3",
		strings.Repeat("x", 65): "h4",
		"unknown":               "h5",
	} {
		a := c.command(id, name, nil)
		if a["ok"] != false || a["error"] == "" {
			t.Errorf("command %q: %v", name, a)
		}
	}
	if a := c.command("p1", "ping", "not an object"); a["ok"] != false {
		t.Errorf("string params: %v", a)
	}
	// Frames the agent ignores; it must stay connected and answer after.
	for _, f := range []string{
		`not json`, `[]`, `{"type":"command"}`, `{"type":"command","id":""}`,
		`{"type":"command","id":"` + strings.Repeat("i", 200) + `","command":"ping"}`,
		`{"type":"command","id":"a\"b","command":"ping"}`,
		`{"type":"command","id":5,"command":"ping"}`,
		`{"type":"welcome"}`, `{"type":"error","code":"x","message":"` + testKey + `"}`,
		`{"type":"` + strings.Repeat("t", 1000) + `"}`,
	} {
		c.send(f)
	}
	if a := c.command("alive", "ping", nil); a["ok"] != true {
		t.Fatalf("agent stopped answering: %v", a)
	}
	// Concurrency bound: while one runs, commands wait as many as the
	// command window (2 in this welcome); one more is refused at once.
	c.send(map[string]any{"type": "command", "id": "b1", "command": "block"})
	c.send(map[string]any{"type": "command", "id": "b2", "command": "ping"})
	c.send(map[string]any{"type": "command", "id": "b3", "command": "ping"})
	if a := c.command("b4", "ping", nil); a["ok"] != false || !strings.Contains(a["error"].(string), "busy") {
		t.Errorf("command past the window: %v", a)
	}
	close(block)
	for _, want := range []string{"b1", "b2", "b3"} {
		if a := c.readType("ack"); a["id"] != want || a["ok"] != true {
			t.Errorf("queued commands answered out of order: got %v, want %s", a, want)
		}
	}
	// An oversized frame ends the connection (1009) and the agent redials.
	c.send(`{"type":"command","id":"big","command":"ping","params":{"p":"` + strings.Repeat("p", 5000) + `"}}`)
	ra.clk.waitTimerExactly(t, "reconnect after an oversized frame", 5*time.Second)
	ra.clk.Advance(5 * time.Second)
	s.accept(t).readType("heartbeat")
}

func TestAgent_Telemetry(t *testing.T) {
	s := newTestServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "readings.json")
	os.WriteFile(file, []byte(`{"temp_c":21.5,"door":"closed"}`), 0o600)
	ra := startAgent(t, s, func(c *agent.Config) {
		c.TelemetryInterval = 10 * time.Second
		c.TelemetryFile = file
		c.PingInterval = time.Hour
		c.MaxOutputBytes = 1024
	})
	c := s.accept(t)
	c.readType("heartbeat")
	ra.clk.waitTimerExactly(t, "telemetry", 10*time.Second)
	ra.clk.Advance(10 * time.Second)
	m := c.readType("telemetry")
	if fmtAck(m) != fmtAck(map[string]any{"type": "telemetry", "readings": map[string]any{"temp_c": 21.5, "door": "closed"}}) {
		t.Errorf("telemetry %v", m)
	}
	// Hostile readings are not sent: not an object, too big.
	for i, bad := range []string{`[1,2]`, `42`, `{"a":`, `{"big":"` + strings.Repeat("x", 2000) + `"}`} {
		os.WriteFile(file, []byte(bad), 0o600)
		ra.clk.waitTimerExactly(t, "telemetry", 10*time.Second)
		ra.clk.Advance(10 * time.Second)
		deadline := time.Now().Add(waitFor)
		for strings.Count(ra.logs.String(), "telemetry not sent") < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("readings %q were not refused", bad)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	os.WriteFile(file, []byte(`{"ok":1}`), 0o600)
	ra.clk.waitTimerExactly(t, "telemetry", 10*time.Second)
	ra.clk.Advance(10 * time.Second)
	if m := c.readType("telemetry"); fmtAck(m["readings"]) != fmtAck(map[string]any{"ok": float64(1)}) {
		t.Errorf("after hostile readings, got %v", m)
	}
	if n := strings.Count(ra.logs.String(), "telemetry not sent"); n != 4 {
		t.Errorf("%d telemetry failures logged, want 4", n)
	}
}

func TestAgent_TelemetryCommand(t *testing.T) {
	s := newTestServer(t)
	prog := writeScript(t, `echo '{"cpu_temp":48}'`)
	ra := startAgent(t, s, func(c *agent.Config) {
		c.TelemetryInterval = 5 * time.Second
		c.TelemetryCommand = prog
		c.PingInterval = time.Hour
	})
	c := s.accept(t)
	c.readType("heartbeat")
	ra.clk.waitTimerExactly(t, "telemetry", 5*time.Second)
	ra.clk.Advance(5 * time.Second)
	if m := c.readType("telemetry"); fmtAck(m["readings"]) != fmtAck(map[string]any{"cpu_temp": float64(48)}) {
		t.Errorf("telemetry %v", m)
	}
}

func TestAgent_HostileWelcome(t *testing.T) {
	for name, w := range map[string]map[string]any{
		"wrong type":  {"type": "message"},
		"no identity": {"type": "welcome"},
		"person":      {"type": "welcome", "identity": map[string]any{"id": "u1", "kind": "person"}},
		"bad id":      {"type": "welcome", "identity": map[string]any{"id": "a b", "kind": "device"}},
		"long id":     {"type": "welcome", "identity": map[string]any{"id": strings.Repeat("i", 500), "kind": "device"}},
		"id number":   {"type": "welcome", "identity": map[string]any{"id": 7, "kind": "device"}},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			s := newTestServer(t)
			s.welcome = func(int) map[string]any { return w }
			ra := startAgent(t, s, nil)
			c := s.accept(t)
			ra.clk.waitTimerExactly(t, "reconnect after a bad welcome", 5*time.Second)
			if err := c.closed(); err == nil {
				t.Error("connection not closed")
			}
		})
	}
	t.Run("NoWelcome", func(t *testing.T) {
		s := newTestServer(t)
		s.welcome = func(int) map[string]any { return nil }
		ra := startAgent(t, s, func(c *agent.Config) { c.HandshakeTimeout = 200 * time.Millisecond })
		s.accept(t)
		ra.clk.waitTimerExactly(t, "reconnect after no welcome", 5*time.Second)
	})
}

func TestAgent_RebootRefusedByDefault(t *testing.T) {
	s := newTestServer(t)
	var called atomic.Int32
	ra := startAgent(t, s, func(c *agent.Config) {
		c.Reboot = func(context.Context) error { called.Add(1); return nil } // but not AllowReboot
	})
	c := s.accept(t)
	c.readType("heartbeat")
	if a := c.command("r1", "reboot", nil); a["ok"] != false || !strings.Contains(a["error"].(string), "not enabled") {
		t.Errorf("reboot: %v", a)
	}
	// A device maker's own reboot handler replaces the built-in one, and
	// Config.Reboot is then not called behind its back.
	ra.Handle("reboot", func(context.Context, json.RawMessage) (any, error) { return "handled", nil })
	if a := c.command("r2", "reboot", nil); a["ok"] != true || a["result"] != "handled" {
		t.Errorf("own reboot: %v", a)
	}
	c.command("r3", "ping", nil) // the r2 goroutine has finished by now
	if called.Load() != 0 {
		t.Error("Config.Reboot called")
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// TestAgent_CommandDeduplicatedAcrossReconnect: a command the server sends
// again (it saw no ack before the connection dropped) is not run twice;
// the agent sends the ack it recorded.
func TestAgent_CommandDeduplicatedAcrossReconnect(t *testing.T) {
	s := newTestServer(t)
	ra := startAgent(t, s, nil)
	var runs atomic.Int64
	ra.Handle("count", func(context.Context, json.RawMessage) (any, error) { return runs.Add(1), nil })
	c := s.accept(t)
	c.readType("heartbeat")
	if a := c.command("cmd_once", "count", nil); a["ok"] != true || a["result"] != float64(1) {
		t.Fatalf("first run: %v", a)
	}
	// Same connection, same id: the recorded ack again.
	if a := c.command("cmd_once", "count", nil); a["ok"] != true || a["result"] != float64(1) {
		t.Fatalf("re-sent on the same connection: %v", a)
	}
	// A new connection re-sends it: still the recorded ack.
	c.ws.CloseNow()
	ra.clk.waitTimerExactly(t, "reconnect", 5*time.Second)
	ra.clk.Advance(5 * time.Second)
	c = s.accept(t)
	c.readType("heartbeat")
	if a := c.command("cmd_once", "count", nil); a["ok"] != true || a["result"] != float64(1) {
		t.Fatalf("re-sent after a reconnect: %v", a)
	}
	if a := c.command("cmd_two", "count", nil); a["result"] != float64(2) {
		t.Fatalf("a new command: %v", a)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
}

// TestAgent_ResultTruncatedToServerLimit: a result larger than the
// welcome's max_result_bytes is cut to it with a marker and
// truncated:true, and the ack still fits the server's limit.
func TestAgent_ResultTruncatedToServerLimit(t *testing.T) {
	s := newTestServer(t)
	base := s.welcome
	s.welcome = func(n int) map[string]any {
		w := base(n)
		w["limits"] = map[string]any{"max_result_bytes": 1000}
		return w
	}
	ra := startAgent(t, s, nil)
	big := strings.Repeat("é\"<", 1400) // 14 KB encoded (escapes are long), under the agent's own 16 KiB
	ra.Handle("dump", func(context.Context, json.RawMessage) (any, error) { return map[string]string{"log": big}, nil })
	ra.Handle("small", func(context.Context, json.RawMessage) (any, error) { return "fits", nil })
	c := s.accept(t)
	c.readType("heartbeat")
	c.send(map[string]any{"type": "command", "id": "big1", "command": "dump"})
	raw, _ := json.Marshal(c.readType("ack"))
	var a struct {
		OK        bool            `json:"ok"`
		Truncated bool            `json:"truncated"`
		Result    json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := json.Unmarshal(a.Result, &text); err != nil {
		t.Fatalf("truncated result is not a JSON string: %s", a.Result)
	}
	if !a.OK || !a.Truncated || len(a.Result) > 1100 || len(a.Result) < 800 || !strings.HasSuffix(text, "…[truncated]") ||
		!strings.HasPrefix(text, `{"log":"é`) {
		t.Fatalf("truncated ack: ok=%v truncated=%v %d bytes: %.80s…", a.OK, a.Truncated, len(a.Result), a.Result)
	}
	if m := c.command("s1", "small", nil); m["result"] != "fits" || m["truncated"] != nil {
		t.Fatalf("small result: %v", m)
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/agent"
)

// The agent against the real server: it connects with its key, its
// heartbeats reach the registry, commands sent over REST are executed
// and acked, and revoking the key stops it with a terminal error.
func TestAgent_AgainstServer(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "raspberry")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"unhidra", "agent", "--url", e.wsURL(), "--ca-file", filepath.Join(e.dir, "tls-cert.pem"), "--log-level", "debug"},
			envFrom(map[string]string{"UNHIDRA_DEVICE_KEY": key}), strings.NewReader(""), &stdout, &stderr)
	}()
	d := e.waitDevice(t, e.token, id, func(d map[string]any) bool {
		heap, _ := d["free_heap"].(float64)
		up, _ := d["uptime"].(float64)
		return d["state"] == "online" && heap > 0 && up > 0
	})
	t.Logf("device after the agent's first heartbeat: state %v, uptime %v s, free_heap %v", d["state"], d["uptime"], d["free_heap"])

	command := func(body map[string]any) map[string]any {
		t.Helper()
		st, res := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, body)
		if st != 201 {
			t.Fatalf("command %v: %d %v", body, st, res)
		}
		cmdID := res["command"].(map[string]any)["id"].(string)
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, res := e.get(t, "/api/v1/devices/"+id+"/commands/"+cmdID, e.token)
			c, _ := res["command"].(map[string]any)
			if s, _ := c["status"].(string); s == "acked" || s == "failed" {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("command %v never answered: %v", body, c)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if c := command(map[string]any{"command": "uptime"}); c["status"] != "acked" || c["result"].(map[string]any)["uptime_s"].(float64) <= 0 {
		t.Errorf("uptime: %v", c)
	}
	if c := command(map[string]any{"command": "reboot"}); c["status"] != "failed" || !strings.Contains(c["error"].(string), "not enabled") {
		t.Errorf("reboot: %v", c)
	}
	if c := command(map[string]any{"command": "relay:set", "type": "config", "params": map[string]any{"on": true}}); c["status"] != "failed" || !strings.Contains(c["error"].(string), "unknown command") {
		t.Errorf("unknown command: %v", c)
	}

	// Revoking the key ends the session for good.
	if st, body := e.request(t, "DELETE", "/api/v1/devices/"+id, e.token, nil); st/100 != 2 {
		t.Fatalf("revoke: %d %v", st, body)
	}
	select {
	case err := <-done:
		var te *agent.TerminalError
		if !errors.As(err, &te) || te.Code < 4500 || te.Code > 4999 {
			t.Fatalf("agent returned %v after the revocation", err)
		}
		t.Logf("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("agent still running after the revocation\n%s", stderr.String())
	}
	if strings.Contains(stderr.String()+stdout.String(), key) {
		t.Errorf("the key appears in the agent's output")
	}
}

// The fleet simulator against the real server: every simulated device is
// accepted with its key and its heartbeats reach the registry.
// UNHIDRA_FLEET_E2E_N=<devices> makes it a larger run (both ends in this
// process; docs/benchmarks.md).
func TestBenchFleet_AgainstServer(t *testing.T) {
	e := startDeviceServer(t)
	n, duration, hb := 20, "3s", "500ms"
	if v, _ := strconv.Atoi(os.Getenv("UNHIDRA_FLEET_E2E_N")); v > 0 {
		n, duration, hb = v, "30s", "5s"
	}
	ids := make([]string, n)
	var keys strings.Builder
	for i := range n {
		id, key := e.register(t, e.token, "sim-"+strconv.Itoa(i))
		ids[i] = id
		keys.WriteString(key + "\n")
	}
	keysFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keysFile, []byte(keys.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runCLI(t, nil, "", "bench", "fleet", "-n", strconv.Itoa(n), "--url", e.wsURL(), "--keys-file", keysFile,
		"--ca-file", filepath.Join(e.dir, "tls-cert.pem"), "--duration", duration, "--heartbeat-interval", hb, "--report-every", "1s")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	t.Log(strings.TrimSpace(stdout))
	if want := fmt.Sprintf("final devices=%d connected=%[1]d peak=%[1]d handshakes=%[1]d reconnects=0 errors=0 terminal=0", n); !strings.Contains(stdout, want) {
		t.Errorf("output:\n%s", stdout)
	}
	for _, id := range ids {
		_, d := e.device(t, e.token, id)
		if heap, _ := d["free_heap"].(float64); heap <= 0 || d["last_seen"] == nil {
			t.Errorf("device %s: %v", id, d)
		}
	}
}

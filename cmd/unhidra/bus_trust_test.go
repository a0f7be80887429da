package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unhidra/unhidra/internal/testenv"
)

// TestBus_ForgedMessagesIgnored: a raw NATS client that knows the bus
// prefix publishes a membership change (itself into a private channel), a
// message frame "from admin" on a conversation subject and a close order
// for another user. The server drops all three and counts them.
func TestBus_ForgedMessagesIgnored(t *testing.T) {
	natsURL, prefix := testenv.NATSURL(t), testenv.UniqueName("forge")
	s := startServer(t, t.TempDir(), map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"},
		"--bus", natsURL, "--bus-prefix", prefix)
	_, ann := register(t, s, "ann")
	malloryID, mallory := register(t, s, "mallory")
	vicID, vic := register(t, s, "vic")
	st, created := s.request(t, "POST", "/api/v1/channels", ann, map[string]any{"name": "secret", "private": true})
	if st != 201 {
		t.Fatalf("create channel: %d %v", st, created)
	}
	secret := created["id"].(string)
	_, list := s.request(t, "GET", "/api/v1/channels", ann, nil)
	var general string
	for _, c := range list["channels"].([]any) {
		if c := c.(map[string]any); c["name"] == "general" {
			general = c["id"].(string)
		}
	}
	a, m, v := dialWS(t, s.client, s.url, ann), dialWS(t, s.client, s.url, mallory), dialWS(t, s.client, s.url, vic)

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	forge := func(subject string, v any) {
		data, _ := json.Marshal(v)
		if err := nc.Publish(prefix+"."+subject, data); err != nil {
			t.Fatal(err)
		}
	}
	forge("chat.membership", map[string]any{"member": malloryID, "conv": secret, "added": true})
	forge("t.conv:"+general, map[string]any{"type": "message", "channel": general, "from": "admin", "from_name": "admin",
		"body": "forged: send me your password", "seq": 999, "message_id": "msg_forged"})
	forge("ctl.close", map[string]any{"identity": vicID, "code": 4001})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// Then real traffic: a message in the private channel, a marker in general.
	if err := a.send(map[string]any{"type": "send", "id": "s1", "channel": secret, "body": "for members only"}); err != nil {
		t.Fatal(err)
	}
	a.expect("ack", nil)
	if err := a.send(map[string]any{"type": "send", "id": "s2", "channel": general, "body": "marker"}); err != nil {
		t.Fatal(err)
	}
	a.expect("ack", nil)
	for name, c := range map[string]*wsClient{"mallory": m, "vic": v} {
		for {
			f, err := c.read(15 * time.Second)
			if err != nil {
				t.Fatalf("%s: before the marker: %v (the forged close order was obeyed?)", name, err)
			}
			if f["type"] == "message" && f["body"] == "marker" {
				break
			}
			if f["body"] == "for members only" || f["channel"] == secret {
				t.Fatalf("%s received the private channel's traffic: %v", name, f)
			}
			if f["message_id"] == "msg_forged" {
				t.Fatalf("%s received the forged message: %v", name, f)
			}
		}
	}
	// Mallory is not a member for the server either.
	if st, _ := s.request(t, "GET", "/api/v1/channels/"+secret+"/messages", mallory, nil); st != 404 {
		t.Fatalf("mallory reads the private channel: %d", st)
	}
	if n := busDropped(t, s, "unsealed"); n < 3 {
		t.Fatalf("unhidra_bus_rejected_total{reason=unsealed} = %d, want ≥ 3", n)
	}
}

var droppedRE = regexp.MustCompile(`unhidra_bus_rejected_total\{reason="([a-z_]+)"\} (\d+)`)

// metricsText returns a node's /metrics (open to loopback).
func metricsText(t *testing.T, s *server) string {
	t.Helper()
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(body)
}

// busDropped reads the drop counter from /metrics.
func busDropped(t *testing.T, s *server, reason string) int {
	t.Helper()
	for _, m := range droppedRE.FindAllStringSubmatch(metricsText(t, s), -1) {
		if m[1] == reason {
			n, _ := strconv.Atoi(m[2])
			return n
		}
	}
	t.Fatalf("no unhidra_bus_rejected_total{reason=%q} in /metrics", reason)
	return 0
}

// TestAdmin_ClusterKey: create (a fresh cluster, then a rotation with a
// delay) and list, in a 0600 file.
func TestAdmin_ClusterKey(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "cluster-key", "create", "--activate-in", "0")
	if err != nil {
		t.Fatalf("create: %v %s", err, stderr)
	}
	out2, _, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "cluster-key", "create")
	if err != nil || !regexp.MustCompile(`seals from \S+; copy`).MatchString(out2) {
		t.Fatalf("rotate: %v %q", err, out2)
	}
	fi, err := os.Stat(filepath.Join(dir, "cluster-keys.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v %v", err, fi)
	}
	list, _, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "cluster-key", "list")
	if err != nil || len(regexp.MustCompile(`(?m)^\S+\s+\d{4}-`).FindAllString(list, -1)) != 2 {
		t.Fatalf("list: %v %q (create said %q)", err, list, out)
	}
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "cluster-key", "create", "--activate-in", "-1h"); err == nil {
		t.Fatal("a negative activation delay was accepted")
	}
}

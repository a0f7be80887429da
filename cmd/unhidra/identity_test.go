package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/protocol"
)

// dialAs opens a WebSocket to s with the given subprotocols and reads the
// welcome frame.
func dialAs(t *testing.T, s *server, protocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(s.url, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: s.client, Subprotocols: protocols})
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %v: %v (status %d)", protocols[len(protocols)-1][:8], err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatalf("welcome: %v", err)
	}
	return c
}

// dialStatus returns the HTTP status of a refused handshake (0 if accepted).
func dialStatus(t *testing.T, s *server, protocols ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(s.url, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: s.client, Subprotocols: protocols})
	if err == nil {
		c.CloseNow()
		return 0
	}
	if res == nil {
		t.Fatalf("dial: %v", err)
	}
	return res.StatusCode
}

// closedWithin asserts that c is closed with CloseRevoked within d of since.
func closedWithin(t *testing.T, what string, c *websocket.Conn, since time.Time, d time.Duration) {
	t.Helper()
	closedWithCodeWithin(t, what, c, protocol.CloseRevoked, since, d)
}

// unauthorizedWithin asserts that token gets 401 from s within d of since.
func unauthorizedWithin(t *testing.T, what string, s *server, token string, since time.Time, d time.Duration) {
	t.Helper()
	for {
		st, _ := s.get(t, "/api/v1/me", token)
		if st == 401 {
			t.Logf("%s: 401 after %v", what, time.Since(since).Round(time.Millisecond))
			return
		}
		if time.Since(since) > d {
			t.Fatalf("%s: still %d after %v", what, st, time.Since(since))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func registerDevice(t *testing.T, s *server, token, name string) (id, key string) {
	t.Helper()
	st, body := s.post(t, "/api/v1/devices", token, map[string]any{"name": name, "type": "esp32"})
	if st != 201 {
		t.Fatalf("register device: %d %v", st, body)
	}
	return body["device"].(map[string]any)["id"].(string), body["api_key"].(string)
}

// TestIdentity_CLIReachesRunningServer: `unhidra admin` writing the
// database of a running single node (SQLite) ends sessions there within
// 1 s: disable closes the user's WebSocket and devices and kills the access
// token; enable does not revive the token; a password reset ends the new
// sessions too.
func TestIdentity_CLIReachesRunningServer(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"})
	st, body := s.post(t, "/api/v1/auth/register", "", map[string]string{"name": "quinn", "password": "correct horse battery"})
	if st != 201 {
		t.Fatalf("register: %d %v", st, body)
	}
	token := body["access_token"].(string)
	person := dialAs(t, s, protocol.Subprotocol, "bearer."+token)
	_, key := registerDevice(t, s, token, "greenhouse")
	dev := dialAs(t, s, key)

	if _, stderr, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "user", "disable", "quinn"); err != nil {
		t.Fatalf("admin user disable: %v\n%s", err, stderr)
	}
	t0 := time.Now()
	closedWithin(t, "person's WebSocket", person, t0, time.Second)
	closedWithin(t, "device's WebSocket", dev, t0, time.Second)
	unauthorizedWithin(t, "old access token", s, token, t0, time.Second)
	if st := dialStatus(t, s, key); st != 401 {
		t.Fatalf("device of a disabled owner reconnecting: %d, want 401", st)
	}

	if _, stderr, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "user", "enable", "quinn"); err != nil {
		t.Fatalf("admin user enable: %v\n%s", err, stderr)
	}
	time.Sleep(500 * time.Millisecond) // the server has seen the change
	if st, _ := s.get(t, "/api/v1/me", token); st != 401 {
		t.Fatalf("old token after re-enable: %d, want 401", st)
	}
	dev = dialAs(t, s, key) // the device is back
	st, body = s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "quinn", "password": "correct horse battery"})
	if st != 200 {
		t.Fatalf("login after enable: %d %v", st, body)
	}
	token = body["access_token"].(string)
	person = dialAs(t, s, protocol.Subprotocol, "bearer."+token)

	out, stderr, err := runCLI(t, nil, "a fresh river stone 5\n", "admin", "--data-dir", dir, "user", "reset-password", "quinn", "--password-stdin")
	if err != nil {
		t.Fatalf("admin user reset-password: %v\n%s", err, stderr)
	}
	t0 = time.Now()
	closedWithin(t, "person's WebSocket after a reset", person, t0, time.Second)
	unauthorizedWithin(t, "access token after a reset", s, token, t0, time.Second)
	if !strings.Contains(out, "end on every node") {
		t.Fatalf("reset-password says %q", out)
	}
	// A password reset leaves the devices alone: still open (the read
	// times out, nothing closed it).
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	for {
		if _, _, err := dev.Read(ctx); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("device after the owner's password reset: %v", err)
			}
			break
		}
	}
}

// TestCluster_EpochOnEveryNode: a password change through node A kills
// the old token and closes its WebSockets on both nodes within 1 s;
// disabling through node A closes the owner's device on node B and refuses
// it everywhere.
func TestCluster_EpochOnEveryNode(t *testing.T) {
	cl := startCluster(t)
	a, b := cl.a, cl.b
	st, body := a.post(t, "/api/v1/auth/register", "", map[string]string{"name": "rhea", "password": "correct horse battery"})
	if st != 201 {
		t.Fatalf("register: %d %v", st, body)
	}
	token, uid := body["access_token"].(string), body["user"].(map[string]any)["id"].(string)
	onA := dialAs(t, a, protocol.Subprotocol, "bearer."+token)
	onB := dialAs(t, b, protocol.Subprotocol, "bearer."+token)
	_, key := registerDevice(t, a, token, "weather mast")
	dev := dialAs(t, b, key)
	if st, _ := b.get(t, "/api/v1/me", token); st != 200 { // B caches the user
		t.Fatalf("token on B: %d", st)
	}

	req := map[string]string{"current_password": "correct horse battery", "new_password": "granite owl meadow 3"}
	st, body = a.request(t, "PUT", "/api/v1/me/password", token, req)
	if st != 200 {
		t.Fatalf("change password on A: %d %v", st, body)
	}
	t0 := time.Now()
	fresh := body["access_token"].(string)
	closedWithin(t, "WebSocket on A", onA, t0, time.Second)
	closedWithin(t, "WebSocket on B", onB, t0, time.Second)
	unauthorizedWithin(t, "old token on A", a, token, t0, time.Second)
	unauthorizedWithin(t, "old token on B", b, token, t0, time.Second)
	for _, s := range []*server{a, b} {
		if st, _ := s.get(t, "/api/v1/me", fresh); st != 200 {
			t.Fatalf("the new session's token: %d", st)
		}
		// A new WebSocket with the old token is refused, with the new
		// one accepted.
		if st := dialStatus(t, s, protocol.Subprotocol, "bearer."+token); st != 401 {
			t.Fatalf("WebSocket handshake with the old token: %d, want 401", st)
		}
		dialAs(t, s, protocol.Subprotocol, "bearer."+fresh)
	}

	_, body = b.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	adminTok := body["access_token"].(string)
	if st, body := a.post(t, "/api/v1/admin/users/"+uid+"/disable", adminTok, nil); st != 200 {
		t.Fatalf("disable on A: %d %v", st, body)
	}
	t0 = time.Now()
	closedWithin(t, "device on B of the disabled owner", dev, t0, time.Second)
	unauthorizedWithin(t, "new token on B after disable", b, fresh, t0, time.Second)
	for _, s := range []*server{a, b} {
		if st := dialStatus(t, s, key); st != 401 {
			t.Fatalf("device of a disabled owner: %d, want 401", st)
		}
	}
}

// readFrame reads frames until one satisfies ok, within 10 s.
func readFrame(t *testing.T, c *websocket.Conn, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if json.Unmarshal(data, &m) == nil && ok(m) {
			return m
		}
	}
}

// TestDevices_DMNeedsOwnerPermission: a device may DM a person only after
// its owner allowed it; its messages carry from_kind "device"; a device
// cannot take a name that looks like a person's.
func TestDevices_DMNeedsOwnerPermission(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"})
	_, owner := register(t, s, "sam")
	_, tessTok := register(t, s, "tess")
	tess := dialAs(t, s, protocol.Subprotocol, "bearer."+tessTok)
	if st, body := s.post(t, "/api/v1/devices", owner, map[string]any{"name": "t\u0435ss", "type": "esp32"}); st != 409 {
		t.Fatalf("device named like a person (Cyrillic e): %d %v", st, body)
	}
	if st, body := s.post(t, "/api/v1/devices", owner, map[string]any{"name": "probe\u200d", "type": "esp32"}); st != 400 {
		t.Fatalf("device name with an invisible joiner: %d %v", st, body)
	}
	id, key := registerDevice(t, s, owner, "probe")
	dev := dialAs(t, s, key)
	send := func(msgID string) map[string]any {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"type": "send", "id": msgID, "to": "tess", "body": "soil is dry"})
		if err := dev.Write(context.Background(), websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		return readFrame(t, dev, func(m map[string]any) bool { return m["id"] == msgID })
	}
	if f := send("m1"); f["type"] != "error" || f["code"] != "forbidden" {
		t.Fatalf("device DM without permission: %v", f)
	}
	st, body := s.request(t, "PATCH", "/api/v1/devices/"+id, owner, map[string]any{"may_dm_people": true})
	if st != 200 || body["device"].(map[string]any)["may_dm_people"] != true {
		t.Fatalf("allow DMs: %d %v", st, body)
	}
	if f := send("m2"); f["type"] != "ack" {
		t.Fatalf("device DM with permission: %v", f)
	}
	m := readFrame(t, tess, func(m map[string]any) bool { return m["type"] == "message" && m["body"] == "soil is dry" })
	if m["from_kind"] != "device" || m["from_name"] != "probe" {
		t.Fatalf("message from a device: %v", m)
	}
	// Withdrawn: the open DM is closed to the device too.
	if st, _ := s.request(t, "PATCH", "/api/v1/devices/"+id, owner, map[string]any{"may_dm_people": false}); st != 200 {
		t.Fatal(st)
	}
	b, _ := json.Marshal(map[string]any{"type": "send", "id": "m3", "channel": m["channel"], "body": "still dry"})
	dev.Write(context.Background(), websocket.MessageText, b)
	if f := readFrame(t, dev, func(m map[string]any) bool { return m["id"] == "m3" }); f["type"] != "error" || f["code"] != "forbidden" {
		t.Fatalf("device writing to the DM after permission was withdrawn: %v", f)
	}
	// Someone else cannot change the setting.
	if st, _ := s.request(t, "PATCH", "/api/v1/devices/"+id, tessTok, map[string]any{"may_dm_people": true}); st != 404 {
		t.Fatalf("another user changing the device's setting: %d", st)
	}
}

func TestSenderLabel(t *testing.T) {
	for _, c := range []struct{ kind, want string }{{"user", "root"}, {"device", "root [device]"}, {"bot", "root [bot]"}, {"", "root"}} {
		if got := senderLabel(&client.Message{FromName: "root", FromKind: c.kind}); got != c.want {
			t.Errorf("kind %q: %q, want %q", c.kind, got, c.want)
		}
	}
}

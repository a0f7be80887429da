package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/protocol"
)

// deviceEnv is a running server with a signed-in administrator.
type deviceEnv struct {
	*server
	dir   string
	token string // the administrator's access token
}

func startDeviceServer(t *testing.T) *deviceEnv {
	t.Helper()
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "device tests admin", "UNHIDRA_ADMIN_NAME": "ops"})
	st, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "ops", "password": "device tests admin"})
	if st != 200 {
		t.Fatalf("login: %d %v", st, body)
	}
	return &deviceEnv{server: s, dir: dir, token: body["access_token"].(string)}
}

// userToken creates a member account and signs it in.
func (e *deviceEnv) userToken(t *testing.T, name string) string {
	t.Helper()
	if st, body := e.post(t, "/api/v1/admin/users", e.token, map[string]string{"name": name, "password": "member password 1"}); st != 201 {
		t.Fatalf("create user: %d %v", st, body)
	}
	st, body := e.post(t, "/api/v1/auth/login", "", map[string]string{"name": name, "password": "member password 1"})
	if st != 200 {
		t.Fatalf("login %s: %d %v", name, st, body)
	}
	return body["access_token"].(string)
}

// register creates a device and returns its ID and key.
func (e *deviceEnv) register(t *testing.T, token, name string) (id, key string) {
	t.Helper()
	st, body := e.post(t, "/api/v1/devices", token, map[string]any{"name": name, "type": "esp32", "capabilities": map[string]any{"relay": true}})
	if st != 201 {
		t.Fatalf("register device: %d %v", st, body)
	}
	return body["device"].(map[string]any)["id"].(string), body["api_key"].(string)
}

func (e *deviceEnv) device(t *testing.T, token, id string) (int, map[string]any) {
	t.Helper()
	st, body := e.get(t, "/api/v1/devices/"+id, token)
	if st != 200 {
		return st, nil
	}
	return st, body["device"].(map[string]any)
}

func (e *deviceEnv) wsURL() string { return "wss" + strings.TrimPrefix(e.url, "https") + "/ws" }

// dial opens a WebSocket with the given subprotocols (real TLS, the
// server's own certificate trusted).
func (e *deviceEnv) dial(t *testing.T, protocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPClient: e.client, Subprotocols: protocols})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, res, err
}

func (e *deviceEnv) mustDial(t *testing.T, protocols ...string) *websocket.Conn {
	t.Helper()
	c, res, err := e.dial(t, protocols...)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	return c
}

// readType reads frames until one of type typ arrives and returns it.
func readType(t *testing.T, c *websocket.Conn, typ string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		checkFrame(t, data)
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("server sent non-JSON %q", data)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// readState reads device_state frames until one with state arrives.
func readState(t *testing.T, c *websocket.Conn, device, state string) map[string]any {
	t.Helper()
	for {
		m := readType(t, c, "device_state")
		if m["device"] == device && m["state"] == state {
			return m
		}
	}
}

// closeCode reads until the connection ends and returns the close code.
// closedWithCodeWithin asserts that c is closed with code within d of since.
func closedWithCodeWithin(t *testing.T, what string, c *websocket.Conn, code int, since time.Time, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), since.Add(d))
	defer cancel()
	err := readUntilClosed(ctx, c)
	if got := websocket.CloseStatus(err); int(got) != code {
		t.Fatalf("%s: %v after %v, want close %d within %v", what, err, time.Since(since), code, d)
	}
	t.Logf("%s closed with %d after %v", what, code, time.Since(since).Round(time.Millisecond))
}

func closeCode(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("connection not closed")
			}
			return websocket.CloseStatus(err)
		}
	}
}

func writeJSON(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// waitDevice polls the REST API until cond holds for the device (the
// heartbeat is handled on the server's reader, concurrently with REST).
func (e *deviceEnv) waitDevice(t *testing.T, token, id string, cond func(d map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, d := e.device(t, token, id)
		if d != nil && cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("device never reached the condition: %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDevices_KeyLifecycleOverWebSocket(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "boiler")
	if !strings.HasPrefix(key, "unhidra_dk_") || !strings.HasPrefix(id, "dev_") {
		t.Fatalf("id %q, key prefix %q", id, key[:11])
	}
	if _, d := e.device(t, e.token, id); d["state"] != "offline" || d["heartbeat_interval"] != 60.0 || d["api_key"] != nil {
		t.Fatalf("new device = %v", d)
	}
	owner := e.mustDial(t, "unhidra.v1", "bearer."+e.token)
	readType(t, owner, "welcome")

	// The seed firmware's form: the key is the whole header.
	dev := e.mustDial(t, key)
	if w := readType(t, dev, "welcome"); w["identity"].(map[string]any)["kind"] != "device" || w["identity"].(map[string]any)["id"] != id {
		t.Fatalf("device welcome = %v", w)
	}
	readState(t, owner, id, "online")
	writeJSON(t, dev, map[string]any{"type": "heartbeat", "device_id": id, "ts": 42, "free_heap": 81234})
	d := e.waitDevice(t, e.token, id, func(d map[string]any) bool { return d["free_heap"] == 81234.0 })
	if d["state"] != "online" || d["uptime"] != 42.0 || d["connected_since"] == nil || d["last_seen"] == nil {
		t.Fatalf("device after heartbeat = %v", d)
	}
	// A key beside unhidra.v1 works too (and gets the echo).
	dev2, res, err := e.dial(t, key, "unhidra.v1")
	if err != nil || res.Header.Get("Sec-WebSocket-Protocol") != "unhidra.v1" {
		t.Fatalf("key beside unhidra.v1: %v %v", err, res)
	}
	readType(t, dev2, "welcome")
	if code := closeCode(t, dev); code != 4006 {
		t.Fatalf("replaced connection closed with %d, want 4006", code)
	}

	// Rotation: the old key dies, connections made with it end (4500), the
	// new key works.
	st, body := e.post(t, "/api/v1/devices/"+id+"/rotate-key", e.token, nil)
	newKey, _ := body["api_key"].(string)
	if st != 200 || newKey == "" || newKey == key {
		t.Fatalf("rotate: %d %v", st, body)
	}
	if code := closeCode(t, dev2); code != 4500 {
		t.Fatalf("connection with the rotated key closed with %d, want 4500", code)
	}
	if _, res, err := e.dial(t, key); err == nil || res == nil || res.StatusCode != 401 {
		t.Fatalf("old key after rotation: %v %v", err, res)
	}
	dev3 := e.mustDial(t, newKey)
	readType(t, dev3, "welcome")

	// Revocation closes the live connection with 4501 and refuses the key.
	req, _ := http.NewRequest("DELETE", e.url+"/api/v1/devices/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	if st, _ := e.do(t, req); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	if code := closeCode(t, dev3); code != 4501 {
		t.Fatalf("revoked device closed with %d, want 4501", code)
	}
	readState(t, owner, id, "offline")
	if _, res, err := e.dial(t, newKey); err == nil || res == nil || res.StatusCode != 401 {
		t.Fatalf("revoked key: %v %v", err, res)
	}
	if st, _ := e.do(t, req.Clone(context.Background())); st != 404 {
		t.Fatalf("revoking twice: %d", st)
	}
	// The server sees the connection go once the close handshake ends.
	e.waitDevice(t, e.token, id, func(d map[string]any) bool { return d["revoked"] == true && d["state"] == "offline" })

	// The trail, once the batch with the last disconnect is flushed.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body := e.get(t, "/api/v1/devices/"+id+"/events", e.token)
		count := map[string]int{}
		evs, _ := body["events"].([]any)
		for _, ev := range evs {
			count[ev.(map[string]any)["action"].(string)]++
		}
		want := map[string]int{"device.registered": 1, "device.connected": 3, "device.disconnected": 3,
			"device.key_rotated": 1, "device.revoked": 1}
		if fmt.Sprint(count) == fmt.Sprint(want) {
			if strings.Contains(fmt.Sprint(body), "unhidra_dk_") {
				t.Fatal("a key appears in the trail")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trail = %v, want %v", count, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawUpgrade sends a WebSocket upgrade by hand and returns the status and
// the Retry-After header.
func (e *deviceEnv) rawUpgrade(t *testing.T, path string, protocol ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for _, p := range protocol {
		req.Header.Add("Sec-WebSocket-Protocol", p)
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header.Get("Retry-After")
}

func TestDevices_RefusedHandshakes(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "sensor")
	_, revokedKey := e.register(t, e.token, "old sensor")
	revokedID := ""
	_, body := e.get(t, "/api/v1/devices", e.token)
	for _, d := range body["devices"].([]any) {
		if m := d.(map[string]any); m["name"] == "old sensor" {
			revokedID = m["id"].(string)
		}
	}
	req, _ := http.NewRequest("DELETE", e.url+"/api/v1/devices/"+revokedID, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	if st, _ := e.do(t, req); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	keyID := key[len("unhidra_dk_") : len("unhidra_dk_")+16]
	failures := 0
	for _, c := range []struct {
		name   string
		header []string
		want   int
	}{
		{"wrong secret", []string{"unhidra_dk_" + keyID + "_" + strings.Repeat("0", 64)}, 401},
		{"unknown key id", []string{"unhidra_dk_ffffffffffffffff_" + strings.Repeat("a", 64)}, 401},
		{"revoked key", []string{revokedKey}, 401},
		{"malformed key", []string{"unhidra_dk_short"}, 401},
		{"not a key at all", []string{"hunter2"}, 401},
		{"upper-case key", []string{strings.ToUpper(key)}, 401},
		{"non-token characters", []string{"unhidra_dk_" + keyID + "/" + strings.Repeat("a", 64)}, 401},
		{"two keys", []string{key + ", " + key}, 401},
		{"no credentials", nil, 401},
		{"empty header", []string{""}, 401},
		{"key in the query string", []string{key}, 400},
	} {
		path := "/ws"
		if c.want == 400 {
			path = "/ws?api_key=redacted"
		}
		st, _ := e.rawUpgrade(t, path, c.header...)
		if st != c.want {
			t.Errorf("%s: status %d, want %d", c.name, st, c.want)
		}
		if st == 401 {
			failures++
		}
	}
	// The good key still works (not yet throttled)...
	c := e.mustDial(t, key)
	readType(t, c, "welcome")
	c.Close(websocket.StatusNormalClosure, "")
	// ...until repeated failures with its key ID from this address
	// throttle that credential. The address itself is only slowed: another
	// device's valid key from behind the same NAT still connects.
	var throttled bool
	for i := 0; i < 30 && !throttled; i++ {
		st, retry := e.rawUpgrade(t, "/ws", "unhidra_dk_"+keyID+"_"+strings.Repeat("1", 64))
		switch st {
		case 401:
			failures++
		case 429:
			throttled = true
			if retry == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("bad key: status %d", st)
		}
	}
	if !throttled {
		t.Fatalf("no 429 after %d failed handshakes", failures)
	}
	_, neighbour := e.register(t, e.token, "neighbour")
	n := e.mustDial(t, neighbour)
	readType(t, n, "welcome")
	n.Close(websocket.StatusNormalClosure, "")
	_ = id
}

func TestDevices_FlappingDeviceIsSlowed(t *testing.T) {
	e := startDeviceServer(t)
	_, key := e.register(t, e.token, "flappy")
	ok := 0
	for i := 0; i < 20; i++ {
		c, res, err := e.dial(t, key)
		if err != nil {
			if res == nil || res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
				t.Fatalf("attempt %d: %v %v", i, err, res)
			}
			if ok < 10 {
				t.Fatalf("slowed after only %d connections", ok)
			}
			return
		}
		ok++
		c.CloseNow()
	}
	t.Fatalf("%d connections in a tight loop were all admitted", ok)
}

func TestDevices_HeartbeatValidationOnTheWire(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "probe")
	dev := e.mustDial(t, key)
	readType(t, dev, "welcome")
	for _, c := range []struct {
		frame string
		code  string
	}{
		{`{"type":"heartbeat","id":"h1","device_id":"dev_someoneelse","ts":1,"free_heap":1}`, "wrong_device"},
		{`{"type":"heartbeat","id":"h2","device_id":"probe","ts":1,"free_heap":1}`, "wrong_device"},
		{`{"type":"heartbeat","id":"h3","device_id":"` + id + `","ts":"soon","free_heap":1}`, "bad_frame"},
		{`{"type":"heartbeat","id":"h4","device_id":"` + id + `","ts":1}`, "invalid"},
		{`{"type":"heartbeat","id":"h5","device_id":"` + id + `","ts":1,"free_heap":-1}`, "invalid"},
		{`{"type":"heartbeat","id":"h6","device_id":"` + id + `","ts":1,"free_heap":1e400}`, "bad_frame"},
		{`{"type":"telemetry","id":"t1","readings":{"a":{"b":1}}}`, "invalid"},
		{`{"type":"command.send","id":"c1","device":"` + id + `","command":"x"}`, "forbidden"},
	} {
		if err := dev.Write(context.Background(), websocket.MessageText, []byte(c.frame)); err != nil {
			t.Fatal(err)
		}
		if m := readType(t, dev, "error"); m["code"] != c.code {
			t.Errorf("%s: error %v, want %s", c.frame, m, c.code)
		}
	}
	// Good frames with an id are acknowledged.
	writeJSON(t, dev, map[string]any{"type": "heartbeat", "id": "ok1", "device_id": id, "timestamp": 5, "free_heap": 4096})
	if m := readType(t, dev, "ack"); m["id"] != "ok1" {
		t.Fatalf("heartbeat ack = %v", m)
	}
	writeJSON(t, dev, map[string]any{"type": "telemetry", "id": "ok2", "readings": map[string]any{"temp": 21.5, "door": "open"}})
	if m := readType(t, dev, "ack"); m["id"] != "ok2" {
		t.Fatalf("telemetry ack = %v", m)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body := e.get(t, "/api/v1/devices/"+id+"/telemetry", e.token)
		if tel, _ := body["telemetry"].([]any); len(tel) == 1 {
			if r := tel[0].(map[string]any)["readings"].(map[string]any); r["temp"] != 21.5 {
				t.Fatalf("telemetry = %v", tel)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("telemetry never stored: %v", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDevices_CommandsQueuedDeliveredAcked(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "relay board")
	owner := e.mustDial(t, "unhidra.v1", "bearer."+e.token)
	readType(t, owner, "welcome")
	// Offline: queued, over WebSocket.
	writeJSON(t, owner, map[string]any{"type": "command.send", "id": "r1", "device": id, "command": "relay.set", "params": map[string]any{"on": true}})
	ack := readType(t, owner, "ack")
	cmd := ack["command"].(map[string]any)
	cmdID := cmd["id"].(string)
	if ack["id"] != "r1" || cmd["status"] != "queued" || !strings.HasPrefix(cmdID, "cmd_") {
		t.Fatalf("command.send ack = %v", ack)
	}
	// And over REST, as an OTA with a TTL.
	st, body := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, map[string]any{"command": "upgrade", "type": "ota", "params": map[string]any{"url": "https://x/fw.bin"}, "ttl_seconds": 600})
	if st != 201 || body["command"].(map[string]any)["status"] != "queued" {
		t.Fatalf("REST command: %d %v", st, body)
	}
	otaID := body["command"].(map[string]any)["id"].(string)
	for _, bad := range []map[string]any{{"command": ""}, {"command": "x", "type": "shell"}, {"command": "x", "ttl_seconds": -5}, {"command": "x", "extra": 1}} {
		if st, _ := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, bad); st != 400 {
			t.Errorf("command %v: %d, want 400", bad, st)
		}
	}
	// The device connects and receives both, in order.
	dev := e.mustDial(t, key)
	readType(t, dev, "welcome")
	c1 := readType(t, dev, "command")
	c2 := readType(t, dev, "ota")
	if c1["id"] != cmdID || c1["command"] != "relay.set" || c1["params"].(map[string]any)["on"] != true || c2["id"] != otaID {
		t.Fatalf("device got %v then %v", c1, c2)
	}
	writeJSON(t, dev, map[string]any{"type": "ack", "id": cmdID, "ok": true, "result": map[string]any{"relay": "on"}})
	writeJSON(t, dev, map[string]any{"type": "ack", "id": otaID, "ok": false, "error": "no space"})
	seen := map[string]string{}
	for len(seen) < 2 {
		m := readType(t, owner, "command_status")
		c := m["command"].(map[string]any)
		if s := c["status"].(string); s == "acked" || s == "failed" {
			seen[c["id"].(string)] = s
		}
	}
	if seen[cmdID] != "acked" || seen[otaID] != "failed" {
		t.Fatalf("status frames = %v", seen)
	}
	st, body = e.get(t, "/api/v1/devices/"+id+"/commands/"+cmdID, e.token)
	if c := body["command"].(map[string]any); st != 200 || c["status"] != "acked" || c["result"].(map[string]any)["relay"] != "on" {
		t.Fatalf("GET command: %d %v", st, body)
	}
	st, body = e.get(t, "/api/v1/devices/"+id+"/commands?status=failed", e.token)
	if cmds := body["commands"].([]any); st != 200 || len(cmds) != 1 || cmds[0].(map[string]any)["error"] != "no space" {
		t.Fatalf("failed commands: %d %v", st, body)
	}
	// A second ack of the same command is refused.
	writeJSON(t, dev, map[string]any{"type": "ack", "id": cmdID, "ok": true})
	if m := readType(t, dev, "error"); m["code"] != "conflict" || m["id"] != cmdID {
		t.Fatalf("double ack: %v", m)
	}
	// Over WebSocket too, a command can be a config or an OTA frame, and
	// an unknown kind is refused.
	writeJSON(t, owner, map[string]any{"type": "command.send", "id": "o1", "device": id, "command": "flash", "command_type": "ota", "ttl_seconds": 60})
	if ack := readType(t, owner, "ack"); ack["id"] != "o1" {
		t.Fatalf("ota over WebSocket: %v", ack)
	}
	if m := readType(t, dev, "ota"); m["command"] != "flash" {
		t.Fatalf("device got %v", m)
	}
	writeJSON(t, owner, map[string]any{"type": "command.send", "id": "o2", "device": id, "command": "x", "command_type": "shell"})
	if m := readType(t, owner, "error"); m["id"] != "o2" || m["code"] != "invalid" {
		t.Fatalf("unknown command kind: %v", m)
	}
}

func TestDevices_OwnershipAndListing(t *testing.T) {
	e := startDeviceServer(t)
	alice := e.userToken(t, "alice")
	bob := e.userToken(t, "bob")
	aliceDev, _ := e.register(t, alice, "alice's lamp")
	e.register(t, bob, "bob's lamp")
	if st, _ := e.device(t, bob, aliceDev); st != 404 {
		t.Fatalf("bob sees alice's device: %d", st)
	}
	for _, p := range []string{"/heap", "/events", "/commands", "/telemetry"} {
		if st, _ := e.get(t, "/api/v1/devices/"+aliceDev+p, bob); st != 404 {
			t.Errorf("bob GET %s: %d", p, st)
		}
	}
	if st, _ := e.post(t, "/api/v1/devices/"+aliceDev+"/rotate-key", bob, nil); st != 404 {
		t.Fatalf("bob rotates alice's key: %d", st)
	}
	count := func(token string) int {
		_, body := e.get(t, "/api/v1/devices", token)
		return len(body["devices"].([]any))
	}
	if a, b, admin := count(alice), count(bob), count(e.token); a != 1 || b != 1 || admin != 2 {
		t.Fatalf("listing: alice %d, bob %d, admin %d", a, b, admin)
	}
	if st, _ := e.device(t, e.token, aliceDev); st != 200 {
		t.Fatalf("admin cannot see alice's device: %d", st)
	}
	if st, _ := e.get(t, "/api/v1/devices", ""); st != 401 {
		t.Fatalf("anonymous listing: %d", st)
	}
	for _, bad := range []map[string]any{
		{"name": "", "type": "esp32"}, {"name": "x", "type": "bad type"},
		{"name": "x", "type": "t", "capabilities": []int{1}},
		{"name": "x", "type": "t", "capabilities": map[string]string{"blob": strings.Repeat("b", 5000)}},
		{"name": "x", "type": "t", "owner_id": "usr_someone"},
	} {
		if st, body := e.post(t, "/api/v1/devices", alice, bad); st != 400 && st != 413 {
			t.Errorf("register %v: %d %v", bad, st, body)
		}
	}
	for _, q := range []string{"?res=second", "?since=yesterday", "?limit=-1"} {
		if st, _ := e.get(t, "/api/v1/devices/"+aliceDev+"/heap"+q, alice); st != 400 {
			t.Errorf("heap%s: %d", q, st)
		}
	}
}

func TestDevices_AdminCLI(t *testing.T) {
	e := startDeviceServer(t)
	out, _, err := runCLI(t, nil, "", "admin", "--data-dir", e.dir, "device", "create", "gate", "--owner", "ops", "--type", "esp32-c3")
	if err != nil || !strings.Contains(out, "created device dev_") {
		t.Fatalf("device create: %v %q", err, out)
	}
	key := out[strings.Index(out, "unhidra_dk_"):]
	key = strings.TrimSpace(key)
	id := strings.Fields(out[strings.Index(out, "dev_"):])[0]
	dev := e.mustDial(t, key)
	readType(t, dev, "welcome")
	out, _, err = runCLI(t, nil, "", "admin", "--data-dir", e.dir, "device", "list", "--owner", "ops")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "esp32-c3") || strings.Contains(out, "unhidra_dk_") {
		t.Fatalf("device list: %v %q", err, out)
	}
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", e.dir, "device", "create", "x"); err == nil || exitCode(err) != 2 {
		t.Fatalf("create without --owner: %v", err)
	}
	// A rotation and a revoke from the CLI reach the running server's live
	// connection within a second (the identity invariant).
	out, _, err = runCLI(t, nil, "", "admin", "--data-dir", e.dir, "device", "rotate-key", id)
	if err != nil || !strings.Contains(out, "unhidra_dk_") {
		t.Fatalf("device rotate-key: %v %q", err, out)
	}
	closedWithCodeWithin(t, "device with the rotated-away key", dev, protocol.CloseBadCredentials, time.Now(), time.Second)
	if st := dialStatus(t, e.server, key); st != 401 {
		t.Fatalf("old key after a CLI rotation: %d, want 401", st)
	}
	dev = e.mustDial(t, strings.TrimSpace(out[strings.Index(out, "unhidra_dk_"):]))
	readType(t, dev, "welcome")
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", e.dir, "device", "revoke", id); err != nil {
		t.Fatal(err)
	}
	closedWithCodeWithin(t, "CLI-revoked device", dev, protocol.CloseRevoked, time.Now(), time.Second)
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", e.dir, "device", "rotate-key", id); err == nil {
		t.Fatal("rotated a revoked device's key")
	}
}

// TestDevices_SeedFirmwareBytes replays, byte for byte, what the seed's
// ESP-IDF WebSocket client sends: its upgrade request with the key as the
// whole Sec-WebSocket-Protocol header, then masked text frames carrying the
// heartbeat (the documented form with "ts", then serde_json's key order
// with "timestamp"), and a keepalive ping.
func TestDevices_SeedFirmwareBytes(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "esp32-seed")
	u, _ := url.Parse(e.url)
	pemBytes, err := os.ReadFile(filepath.Join(e.dir, "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, ServerName: u.Hostname()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	host, port := u.Hostname(), u.Port()
	const wsKey = "x3JJHMbDL1EzLkh9GBhXDw=="
	request := "GET /ws HTTP/1.1\r\n" +
		"Connection: Upgrade\r\n" +
		"Host: " + host + ":" + port + "\r\n" +
		"User-Agent: ESP32 Websocket Client\r\n" +
		"Upgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: " + wsKey + "\r\n" +
		"Sec-WebSocket-Protocol: " + key + "\r\n" +
		"\r\n"
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if res.StatusCode != 101 || res.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("upgrade: %s %v", res.Status, res.Header)
	}
	if p := res.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		t.Fatalf("server echoed a subprotocol (%q); the key must never be echoed", p)
	}
	op, payload := readRawFrame(t, br)
	if op != 1 || !bytes.Contains(payload, []byte(`"type":"welcome"`)) || !bytes.Contains(payload, []byte(`"heartbeat_interval":60`)) {
		t.Fatalf("first frame: op %d %s", op, payload)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	hb1 := `{"type":"heartbeat","device_id":"` + id + `","ts":3600,"free_heap":182344}`
	conn.Write(maskedFrame(0x1, []byte(hb1), mask))
	e.waitDevice(t, e.token, id, func(d map[string]any) bool { return d["free_heap"] == 182344.0 && d["state"] == "online" })
	// serde_json without preserve_order sorts keys; "timestamp" spelling.
	hb2 := `{"device_id":"` + id + `","free_heap":181000,"timestamp":3660,"type":"heartbeat"}`
	conn.Write(maskedFrame(0x1, []byte(hb2), mask))
	d := e.waitDevice(t, e.token, id, func(d map[string]any) bool { return d["free_heap"] == 181000.0 })
	if d["state"] != "online" || d["uptime"] != 3660.0 || d["reboots"] != 0.0 {
		t.Fatalf("device after the seed's heartbeats = %v", d)
	}
	// The firmware's keepalive ping is answered with a pong carrying its payload.
	conn.Write(maskedFrame(0x9, []byte("ka"), mask))
	for {
		op, payload := readRawFrame(t, br)
		if op == 0xA {
			if string(payload) != "ka" {
				t.Fatalf("pong payload %q", payload)
			}
			break
		}
		if op == 0x8 {
			t.Fatalf("server closed: %x", payload)
		}
	}
	// No reply frames to heartbeats without an id, the firmware ignores none
	// and expects none; the heap series has the samples.
	_, body := e.get(t, "/api/v1/devices/"+id+"/heap", e.token)
	if body["resolution"] != "minute" {
		t.Fatalf("heap: %v", body)
	}
}

// maskedFrame encodes a client frame (FIN set, masked as RFC 6455 requires).
func maskedFrame(op byte, payload []byte, mask [4]byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// readRawFrame reads one unmasked server frame.
func readRawFrame(t *testing.T, r *bufio.Reader) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[1]&0x80 != 0 {
		t.Fatal("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		io.ReadFull(r, ext[:])
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		io.ReadFull(r, ext[:])
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<20 {
		t.Fatalf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0f, payload
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsClient is a real WebSocket client of the chat protocol.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialWS(t *testing.T, httpClient *http.Client, baseURL, token string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "wss" + strings.TrimPrefix(baseURL, "https") + "/ws"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:   httpClient,
		Subprotocols: []string{"unhidra.v1", "bearer." + token},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(1 << 22)
	t.Cleanup(func() { conn.CloseNow() })
	c := &wsClient{t: t, conn: conn}
	c.expect("welcome", nil)
	c.expect("presence_snapshot", nil) // the connection now follows its conversations
	return c
}

func (c *wsClient) send(v any) error {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}

func (c *wsClient) read(timeout time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	checkFrame(c.t, data)
	var f map[string]any
	return f, json.Unmarshal(data, &f)
}

// expect returns the next frame of type typ for which ok holds, skipping others.
func (c *wsClient) expect(typ string, ok func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", typ, err)
		}
		if f["type"] == typ && (ok == nil || ok(f)) {
			return f
		}
	}
}

func (s *server) request(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return s.do(t, req)
}

func register(t *testing.T, s *server, name string) (id, token string) {
	t.Helper()
	st, body := s.post(t, "/api/v1/auth/register", "", map[string]string{"name": name, "password": "correct horse battery"})
	if st != 201 {
		t.Fatalf("register %s: %d %v", name, st, body)
	}
	return body["user"].(map[string]any)["id"].(string), body["access_token"].(string)
}

// TestChat_EndToEnd drives the messaging REST API and WebSocket protocol
// of a real server over TLS.
func TestChat_EndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), map[string]string{"UNHIDRA_ADMIN_PASSWORD": "harbor lights at dusk"})
	annID, ann := register(t, s, "ann")
	bobID, bob := register(t, s, "bob")
	_, eve := register(t, s, "eve")

	st, created := s.request(t, "POST", "/api/v1/channels", ann, map[string]any{"name": "team"})
	if st != 201 {
		t.Fatalf("create channel: %d %v", st, created)
	}
	team := created["id"].(string)
	st, list := s.request(t, "GET", "/api/v1/channels", bob, nil)
	member := map[string]any{}
	for _, c := range list["channels"].([]any) {
		c := c.(map[string]any)
		member[c["name"].(string)] = c["member"]
	}
	if st != 200 || member["general"] != true || member["team"] != false {
		t.Fatalf("bob's channels: %d %v", st, list)
	}
	if st, body := s.request(t, "POST", "/api/v1/channels/"+team+"/join", bob, nil); st != 204 {
		t.Fatalf("join: %d %v", st, body)
	}

	a := dialWS(t, s.client, s.url, ann)
	b := dialWS(t, s.client, s.url, bob)
	if err := a.send(map[string]any{"type": "send", "id": "c1", "channel": team, "body": "hello team"}); err != nil {
		t.Fatal(err)
	}
	ack := a.expect("ack", nil)
	if ack["id"] != "c1" || ack["seq"] != 1.0 || ack["message_id"] == "" {
		t.Fatalf("ack = %v", ack)
	}
	msg := b.expect("message", nil)
	if msg["channel"] != team || msg["from"] != annID || msg["body"] != "hello team" || msg["message_id"] != ack["message_id"] {
		t.Fatalf("message = %v", msg)
	}

	// History over REST: cursor by seq, limits, membership.
	st, hist := s.request(t, "GET", "/api/v1/channels/"+team+"/messages?limit=10", bob, nil)
	if msgs, _ := hist["messages"].([]any); st != 200 || len(msgs) != 1 || hist["has_more"] != false ||
		msgs[0].(map[string]any)["seq"] != 1.0 || msgs[0].(map[string]any)["from"] != annID {
		t.Fatalf("history: %d %v", st, hist)
	}
	for _, q := range []string{"limit=abc", "before=-1", "after=99999999999999999999"} {
		if st, _ := s.request(t, "GET", "/api/v1/channels/"+team+"/messages?"+q, bob, nil); st != 400 {
			t.Errorf("history?%s: %d, want 400", q, st)
		}
	}
	if st, _ := s.request(t, "GET", "/api/v1/channels/"+team+"/messages", eve, nil); st != 404 {
		t.Errorf("non-member history: %d, want 404", st)
	}
	if st, _ := s.request(t, "POST", "/api/v1/channels/"+team+"/messages", eve, map[string]any{"body": "hi"}); st != 404 {
		t.Errorf("non-member post: %d, want 404", st)
	}
	if st, _ := s.request(t, "GET", "/api/v1/channels/"+team+"/messages", "", nil); st != 401 {
		t.Errorf("anonymous history: %d, want 401", st)
	}
	if st, body := s.request(t, "POST", "/api/v1/channels", ann, map[string]any{"name": strings.Repeat("x", 65)}); st != 413 && st != 400 {
		t.Errorf("long channel name: %d %v", st, body)
	}

	// A DM opened by the first message, with an unread count for the receiver.
	if err := b.send(map[string]any{"type": "send", "id": "d1", "to": "ann", "body": "psst"}); err != nil {
		t.Fatal(err)
	}
	dmAck := b.expect("ack", nil)
	dm := a.expect("message", func(f map[string]any) bool { return f["body"] == "psst" })
	if dm["channel"] != dmAck["channel"] || dm["from"] != bobID || !strings.HasPrefix(dm["channel"].(string), "dmc_") {
		t.Fatalf("DM = %v (ack %v)", dm, dmAck)
	}
	unread := func() any {
		_, dms := s.request(t, "GET", "/api/v1/dms", ann, nil)
		for _, d := range dms["dms"].([]any) {
			if d := d.(map[string]any); d["id"] == dm["channel"] {
				return d["unread"]
			}
		}
		return nil
	}
	if u := unread(); u != 1.0 {
		t.Fatalf("unread before read = %v", u)
	}
	if st, body := s.request(t, "POST", "/api/v1/channels/"+dm["channel"].(string)+"/read", ann, map[string]any{"seq": 1}); st != 200 {
		t.Fatalf("read: %d %v", st, body)
	}
	if u := unread(); u != 0.0 {
		t.Fatalf("unread after read = %v", u)
	}
	// Hostile values on the REST side.
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/api/v1/channels/" + team + "/messages", map[string]any{"body": strings.Repeat("ü", 4001)}, 413},
		{"POST", "/api/v1/channels/" + team + "/messages", map[string]any{"body": "x", "id": strings.Repeat("i", 65)}, 400},
		{"POST", "/api/v1/channels/" + team + "/messages", map[string]any{"body": "x", "from": bobID}, 400},
		{"POST", "/api/v1/channels/" + team + "/read", map[string]any{"seq": -1}, 400},
		{"POST", "/api/v1/channels/" + team + "/members", map[string]any{"member": strings.Repeat("m", 65)}, 400},
		{"POST", "/api/v1/dms", map[string]any{"members": []string{"a", "b", "c", "d", "e", "f", "g", "h"}}, 400},
		{"POST", "/api/v1/dms", map[string]any{"members": []string{"nobody-here"}}, 404},
		{"PATCH", "/api/v1/channels/" + team, map[string]any{"name": "tab	here"}, 400},
		{"GET", "/api/v1/channels/" + strings.Repeat("c", 5000) + "/messages", nil, 404},
	} {
		if st, body := s.request(t, c.method, c.path, ann, c.body); st != c.want {
			t.Errorf("%s %.60s %.60v: %d %v, want %d", c.method, c.path, c.body, st, body, c.want)
		}
	}

	// Members, invite and kick over REST.
	if st, body := s.request(t, "DELETE", "/api/v1/channels/"+team+"/members/"+bobID, ann, nil); st != 204 {
		t.Fatalf("kick: %d %v", st, body)
	}
	b.expect("conversation_removed", nil)
	if st, body := s.request(t, "POST", "/api/v1/channels/"+team+"/members", ann, map[string]any{"member": "bob"}); st != 201 {
		t.Fatalf("invite: %d %v", st, body)
	}
	if st, body := s.request(t, "GET", "/api/v1/channels/"+team+"/members", bob, nil); st != 200 || len(body["members"].([]any)) != 2 {
		t.Fatalf("members: %d %v", st, body)
	}
}

// trustingClient returns an HTTP client that trusts exactly the
// certificate in dataDir.
func trustingClient(t *testing.T, dataDir string) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(dataDir, "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

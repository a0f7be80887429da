package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/internal/testenv"
	"github.com/unhidra/unhidra/protocol"
)

// cluster is two servers as one cluster: one PostgreSQL schema, one NATS
// prefix, the same signing and cluster keys. Node A creates the administrator.
type cluster struct {
	a, b       *server
	dirA, dirB string
}

func startCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	dsn, natsURL, prefix := testenv.PostgresDSN(t), testenv.NATSURL(t), testenv.UniqueName("cluster")
	common := append([]string{"--store", dsn, "--bus", natsURL, "--bus-prefix", prefix, "--drain-window", "100ms"}, extra...)
	c := &cluster{dirA: t.TempDir(), dirB: t.TempDir()}
	c.a = startServer(t, c.dirA, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}, common...)
	for _, f := range []string{"signing-keys.json", "cluster-keys.json"} {
		keys, err := os.ReadFile(filepath.Join(c.dirA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.dirB, f), keys, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.b = startServer(t, c.dirB, nil, common...)
	return c
}

// TestCluster_TwoNodes runs two servers as one cluster: one PostgreSQL
// database, one NATS bus, the same signing keys. An account disabled
// through node B loses its live connection on node A.
func TestCluster_TwoNodes(t *testing.T) {
	cl := startCluster(t)
	a, b := cl.a, cl.b
	if codeRE.MatchString(b.out.String()) {
		t.Fatal("node B offered a bootstrap code although the shared database has an administrator")
	}

	// A user registered on A connects to A.
	st, body := a.post(t, "/api/v1/auth/register", "", map[string]string{"name": "roamer", "password": "correct horse battery"})
	if st != 201 {
		t.Fatalf("register on A: %d %v", st, body)
	}
	userTok, userID := body["access_token"].(string), body["user"].(map[string]any)["id"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(a.url, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: a.client, Subprotocols: []string{protocol.Subprotocol, "bearer." + userTok}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil { // welcome
		t.Fatal(err)
	}

	// The token from A is valid on B (same keys, same database).
	if st, _ := b.get(t, "/api/v1/me", userTok); st != 200 {
		t.Fatalf("A's token on B: %d", st)
	}
	// The administrator disables the user through B.
	_, body = b.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	adminTok := body["access_token"].(string)
	if st, body := b.post(t, "/api/v1/admin/users/"+userID+"/disable", adminTok, nil); st != 200 {
		t.Fatalf("disable on B: %d %v", st, body)
	}
	err = readUntilClosed(ctx, c)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || int(ce.Code) != protocol.CloseRevoked {
		t.Fatalf("connection on A after disabling on B: %v, want close %d", err, protocol.CloseRevoked)
	}
}

// TestCluster_ChatAcrossNodes: people connected to different nodes talk;
// a DM opened through node B reaches its recipient's connection on node A.
func TestCluster_ChatAcrossNodes(t *testing.T) {
	cl := startCluster(t)
	a, b, dirA, dirB := cl.a, cl.b, cl.dirA, cl.dirB
	for _, n := range []string{"alpha", "bravo"} {
		if st, body := a.post(t, "/api/v1/auth/register", "", map[string]string{"name": n, "password": "correct horse battery"}); st != 201 {
			t.Fatalf("register: %d %v", st, body)
		}
	}
	onA := newTestClient(t, a, dirA, "alpha", "correct horse battery")
	onB := newTestClient(t, b, dirB, "bravo", "correct horse battery")
	ctx := context.Background()
	chans, err := onB.Channels(ctx)
	if err != nil || len(chans) == 0 {
		t.Fatal(chans, err)
	}
	if _, err := onB.Send(ctx, chans[0].ID, "hello from node B"); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, onA, func(m *client.Message) bool { return m.Body == "hello from node B" })
	if _, err := onB.SendDirect(ctx, "alpha", "a private word across nodes"); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, onA, func(m *client.Message) bool { return m.Body == "a private word across nodes" })
}

// TestCluster_PresenceAcrossNodes: an identity connected to two nodes is
// offline only when both connections are gone.
func TestCluster_PresenceAcrossNodes(t *testing.T) {
	cl := startCluster(t)
	a, b, dirA, dirB := cl.a, cl.b, cl.dirA, cl.dirB
	for _, n := range []string{"alpha", "watcher"} {
		if st, body := a.post(t, "/api/v1/auth/register", "", map[string]string{"name": n, "password": "correct horse battery"}); st != 201 {
			t.Fatalf("register: %d %v", st, body)
		}
	}
	_, body := a.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	adminTok := body["access_token"].(string)
	watcher := newTestClient(t, a, dirA, "watcher", "correct horse battery")
	alphaOnA := newTestClient(t, a, dirA, "alpha", "correct horse battery")
	alphaOnB := newTestClient(t, b, dirB, "alpha", "correct horse battery")
	alphaID := alphaOnA.User().ID
	ctx := context.Background()
	chans, _ := alphaOnB.Channels(ctx)
	general := chans[0].ID
	// Node A has heard that alpha is on node B once something node B
	// published after alpha connected there reaches node A: one node's bus
	// messages arrive in order. Without this, alpha may leave node A
	// before the note of its arrival on B got there, and be announced
	// offline (truly, as far as node A could know).
	if _, err := alphaOnB.Send(ctx, general, "alpha is on B"); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, watcher, func(m *client.Message) bool { return m.Body == "alpha is on B" })

	connsOn := func(s *server, identity string) int {
		_, body := s.get(t, "/api/v1/admin/connections", adminTok)
		n := 0
		for _, c := range body["connections"].([]any) {
			if c.(map[string]any)["identity_id"] == identity {
				n++
			}
		}
		return n
	}
	// alpha leaves node A but stays on node B.
	stopClient(t, alphaOnA)
	for deadline := time.Now().Add(10 * time.Second); connsOn(a, alphaID) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("node A still holds alpha's connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := alphaOnB.Send(ctx, general, "still here"); err != nil {
		t.Fatal(err)
	}
	// Until that message, the watcher must not have been told alpha is offline.
	for deadline := time.After(15 * time.Second); ; {
		select {
		case e := <-watcher.Events():
			if e.Message != nil && e.Message.Body == "still here" {
				goto leaveB
			}
			if e.Type == "presence" && strings.Contains(string(e.Raw), alphaID) && strings.Contains(string(e.Raw), `"offline"`) {
				t.Fatalf("alpha reported offline while connected to node B: %s", e.Raw)
			}
		case <-deadline:
			t.Fatal("marker message not received")
		}
	}
leaveB:
	stopClient(t, alphaOnB)
	for deadline := time.After(15 * time.Second); ; {
		select {
		case e := <-watcher.Events():
			if e.Type == "presence" && strings.Contains(string(e.Raw), alphaID) && strings.Contains(string(e.Raw), `"offline"`) {
				return
			}
		case <-deadline:
			t.Fatal("alpha never reported offline after leaving both nodes")
		}
	}
}

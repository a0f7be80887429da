package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/testenv"
)

// freeBase finds six consecutive free loopback ports.
func freeBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + rand.IntN(30000)
		ok := true
		for p := base; p < base+6 && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

func postJSON(t *testing.T, url, token string, in any, out any) int {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest("POST", url, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if out != nil {
		json.NewDecoder(res.Body).Decode(out)
	}
	return res.StatusCode
}

type wsConn struct {
	t *testing.T
	c *websocket.Conn
}

func dial(t *testing.T, base, token string) *wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+base+"/ws", &websocket.DialOptions{Subprotocols: []string{"unhidra.v1", "bearer." + token}})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	w := &wsConn{t: t, c: c}
	w.expect("presence_snapshot", nil) // following its conversations now
	return w
}

func (w *wsConn) expect(typ string, ok func(map[string]any) bool) map[string]any {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, data, err := w.c.Read(ctx)
		if err != nil {
			w.t.Fatalf("waiting for %s: %v", typ, err)
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			w.t.Fatalf("frame %q: %v", data, err)
		}
		if f["type"] == typ && (ok == nil || ok(f)) {
			return f
		}
	}
}

func (w *wsConn) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

// TestClusterScript_MessageCrossesThreeNodes: scripts/cluster.sh brings up
// three nodes, their own NATS (with a password) and database, and HAProxy;
// users on three different nodes exchange messages; status reports it;
// down removes it all.
func TestClusterScript_MessageCrossesThreeNodes(t *testing.T) {
	requireTool(t, "haproxy")
	requireTool(t, "psql")
	bin, _ := binaries(t)
	pg := os.Getenv("UNHIDRA_TEST_POSTGRES")
	if pg == "" {
		pg = testenv.DefaultPostgres
	}
	testenv.PostgresDSN(t) // fails loudly in CI when PostgreSQL is missing
	dir := filepath.Join(t.TempDir(), "cluster")
	port := freeBase(t)
	env := []string{"UNHIDRA_CLUSTER_DIR=" + dir, fmt.Sprintf("UNHIDRA_CLUSTER_PORT=%d", port),
		"UNHIDRA_CLUSTER_POSTGRES=" + pg, "UNHIDRA_BIN=" + bin}
	script := filepath.Join(repo, "scripts/cluster.sh")
	t.Cleanup(func() {
		cmd := exec.Command(script, "down")
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	run(t, repo, env, script, "up")
	if out := run(t, repo, env, script, "status"); strings.Count(out, "ready") != 4 || strings.Contains(out, "NOT") {
		t.Fatalf("status:\n%s", out)
	}
	nats, _ := os.ReadFile(filepath.Join(dir, "nats.conf"))
	if !strings.Contains(string(nats), "password") {
		t.Fatal("NATS runs without a password")
	}

	lb := fmt.Sprintf("http://127.0.0.1:%d", port)
	node := func(n int) string { return fmt.Sprintf("127.0.0.1:%d", port+n) }
	pw, _ := os.ReadFile(filepath.Join(dir, "admin-password"))
	var session struct {
		AccessToken string              `json:"access_token"`
		User        struct{ ID string } `json:"user"`
	}
	if st := postJSON(t, lb+"/api/v1/auth/login", "", map[string]string{"name": "admin", "password": string(pw)}, &session); st != 200 {
		t.Fatalf("admin login through the balancer: %d", st)
	}
	tokens := map[string]string{}
	for _, name := range []string{"ann", "bob", "cyd"} {
		var s struct {
			AccessToken string `json:"access_token"`
		}
		if st := postJSON(t, lb+"/api/v1/auth/register", "", map[string]string{"name": name, "password": "a long enough password"}, &s); st != 201 {
			t.Fatalf("register %s: %d", name, st)
		}
		tokens[name] = s.AccessToken
	}
	var ch struct{ ID string }
	if st := postJSON(t, lb+"/api/v1/channels", tokens["ann"], map[string]any{"name": "across"}, &ch); st != 201 {
		t.Fatalf("create channel: %d", st)
	}
	for _, name := range []string{"bob", "cyd"} {
		if st := postJSON(t, lb+"/api/v1/channels/"+ch.ID+"/join", tokens[name], nil, nil); st != 204 {
			t.Fatalf("%s joins: %d", name, st)
		}
	}
	ann, bob, cyd := dial(t, node(1), tokens["ann"]), dial(t, node(2), tokens["bob"]), dial(t, node(3), tokens["cyd"])
	ann.send(map[string]any{"type": "send", "id": "a1", "channel": ch.ID, "body": "from node 1"})
	ann.expect("ack", nil)
	for _, w := range []*wsConn{bob, cyd} {
		w.expect("message", func(f map[string]any) bool { return f["body"] == "from node 1" })
	}
	cyd.send(map[string]any{"type": "send", "id": "c1", "channel": ch.ID, "body": "from node 3"})
	for _, w := range []*wsConn{ann, bob} {
		w.expect("message", func(f map[string]any) bool { return f["body"] == "from node 3" })
	}
	// And through the balancer.
	lbConn := dial(t, strings.TrimPrefix(lb, "http://"), tokens["bob"])
	lbConn.send(map[string]any{"type": "send", "id": "b1", "channel": ch.ID, "body": "via haproxy"})
	for _, w := range []*wsConn{ann, cyd} {
		w.expect("message", func(f map[string]any) bool { return f["body"] == "via haproxy" })
	}
}

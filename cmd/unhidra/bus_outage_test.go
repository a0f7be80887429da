package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/testenv"
)

// cutProxy forwards TCP to target until Cut closes every connection and
// refuses new ones; Restore lets them through again. It stands between one
// node and NATS, so that node alone loses the bus.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		p.mu.Lock()
		if err != nil || p.cut {
			p.mu.Unlock()
			c.Close()
			if up != nil {
				up.Close()
			}
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes every forwarded connection and refuses new ones.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore forwards new connections again.
func (p *cutProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// busConnected reads unhidra_bus_connected from a node's /metrics.
func busConnected(t *testing.T, s *server) bool {
	t.Helper()
	return strings.Contains(metricsText(t, s), "\nunhidra_bus_connected 1\n")
}

func waitBus(t *testing.T, s *server, connected bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for busConnected(t, s) != connected {
		if time.Now().After(deadline) {
			t.Fatalf("bus connected is not %v after 30 s", connected)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCluster_MembershipAcrossBusOutage: membership changes travel on the
// bus, so a node cut off from it misses those made on another node. Node A
// reaches NATS through a proxy the test cuts. A member kicked through node B
// meanwhile is removed on A during the outage (A checks the members of what
// it follows from the store), before the conversation's next message, which
// A's outage sync would otherwise deliver to it; a conversation it was added
// to meanwhile reaches its connection on A once the bus is back.
func TestCluster_MembershipAcrossBusOutage(t *testing.T) {
	natsURL := testenv.NATSURL(t)
	proxy := startCutProxy(t, strings.TrimPrefix(natsURL, "nats://"))
	dsn, prefix := testenv.PostgresDSN(t), testenv.UniqueName("outage")
	common := []string{"--store", dsn, "--bus-prefix", prefix, "--drain-window", "100ms"}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startServer(t, dirA, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"},
		append(common, "--bus", "nats://"+proxy.ln.Addr().String())...)
	for _, f := range []string{"signing-keys.json", "cluster-keys.json"} {
		keys, err := os.ReadFile(filepath.Join(dirA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, f), keys, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := startServer(t, dirB, nil, append(common, "--bus", natsURL)...)

	_, olive := register(t, b, "olive")
	malloryID, mallory := register(t, b, "mallory")
	newChannel := func(name string) string {
		st, body := b.request(t, "POST", "/api/v1/channels", olive, map[string]any{"name": name, "private": true})
		if st != 201 {
			t.Fatalf("create %s: %d %v", name, st, body)
		}
		return body["id"].(string)
	}
	invite := func(conv string) {
		if st, body := b.request(t, "POST", "/api/v1/channels/"+conv+"/members", olive, map[string]any{"member": "mallory"}); st != 201 {
			t.Fatalf("invite: %d %v", st, body)
		}
	}
	post := func(conv, text string) {
		if st, body := b.request(t, "POST", "/api/v1/channels/"+conv+"/messages", olive, map[string]any{"body": text}); st != 201 {
			t.Fatalf("post: %d %v", st, body)
		}
	}
	ops, late := newChannel("ops-room"), newChannel("late-room")
	m := dialWS(t, a.client, a.url, mallory)
	invite(ops)
	m.expect("conversation_added", func(f map[string]any) bool { return f["channel"] == ops })
	post(ops, "before the outage")
	m.expect("message", func(f map[string]any) bool { return f["body"] == "before the outage" })

	proxy.Cut()
	waitBus(t, a, false)
	if st, body := b.request(t, "DELETE", "/api/v1/channels/"+ops+"/members/"+malloryID, olive, nil); st != 204 {
		t.Fatalf("kick: %d %v", st, body)
	}
	invite(late)
	// The removal reaches A's connection during the outage; nothing of the
	// conversation after it does, although A keeps syncing it from the store.
	m.expect("conversation_removed", func(f map[string]any) bool { return f["channel"] == ops })
	post(ops, "after the kick")
	post(late, "added during the outage")

	proxy.Restore()
	waitBus(t, a, true)
	m.expect("conversation_added", func(f map[string]any) bool { return f["channel"] == late })
	post(late, "after the outage")
	for {
		f := m.expect("message", nil)
		if f["channel"] == ops {
			t.Fatalf("kicked member received %v", f)
		}
		if f["body"] == "after the outage" {
			break
		}
	}
}

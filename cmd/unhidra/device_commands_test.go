package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/agent"
)

// fullQueue is today's per-device queue limit: 100 commands.
const fullQueue = 100

// queueCommands queues n "step" commands (params {"n": i}) for an offline
// device and returns their ids in creation order. The 101st is refused.
func (e *deviceEnv) queueCommands(t *testing.T, id string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		st, body := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, map[string]any{"command": "step", "params": map[string]any{"n": i}})
		if st != 201 || body["command"].(map[string]any)["status"] != "queued" {
			t.Fatalf("command %d: %d %v", i, st, body)
		}
		ids[i] = body["command"].(map[string]any)["id"].(string)
	}
	if st, _ := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, map[string]any{"command": "step"}); n == fullQueue && st != 429 {
		t.Fatalf("command past a full queue: %d, want 429", st)
	}
	return ids
}

// statusWatch collects the command_status frames an owner's connection
// receives live: the last status of each command.
type statusWatch struct {
	mu   sync.Mutex
	last map[string]string
	seen chan struct{}
}

func (e *deviceEnv) watchStatuses(t *testing.T) *statusWatch {
	t.Helper()
	owner := e.mustDial(t, "unhidra.v1", "bearer."+e.token)
	readType(t, owner, "welcome")
	w := &statusWatch{last: map[string]string{}, seen: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); owner.CloseNow(); <-done })
	go func() {
		defer close(done)
		for {
			_, data, err := owner.Read(ctx)
			if err != nil {
				return
			}
			var m struct {
				Type    string `json:"type"`
				Command struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"command"`
			}
			if json.Unmarshal(data, &m) == nil && m.Type == "command_status" {
				w.mu.Lock()
				w.last[m.Command.ID] = m.Command.Status
				w.mu.Unlock()
				select {
				case w.seen <- struct{}{}:
				default:
				}
			}
		}
	}()
	return w
}

// waitTerminal waits until the owner has seen every id reach status.
func (w *statusWatch) waitTerminal(t *testing.T, ids []string, status string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		w.mu.Lock()
		missing := 0
		var example string
		for _, id := range ids {
			if w.last[id] != status {
				missing++
				example = id + "=" + w.last[id]
			}
		}
		w.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-w.seen:
		case <-deadline:
			t.Fatalf("%d commands never reached %q live (e.g. %s)", missing, status, example)
		}
	}
}

// assertNoneStranded checks the stored state: nothing queued or delivered
// is left, and every command has the status wanted.
func (e *deviceEnv) assertNoneStranded(t *testing.T, id string, ids []string, status string) {
	t.Helper()
	for _, s := range []string{"queued", "delivered"} {
		_, body := e.get(t, "/api/v1/devices/"+id+"/commands?status="+s, e.token)
		if cmds := body["commands"].([]any); len(cmds) != 0 {
			t.Errorf("%d commands stranded %s", len(cmds), s)
		}
	}
	_, body := e.get(t, "/api/v1/devices/"+id+"/commands?status="+status+"&limit=1000", e.token)
	if got := len(body["commands"].([]any)); got != len(ids) {
		t.Errorf("%d commands %s, want %d", got, status, len(ids))
	}
}

// TestCommands_FullQueueGoAgent: 100 commands queued for an offline device;
// the Go agent connects and answers them as it works. Every command is
// acked (none busy, none stranded), the owner sees each end live, the
// connection is never closed (no 4004: one connection in the trail), and
// the agent runs them in creation order.
func TestCommands_FullQueueGoAgent(t *testing.T) {
	for _, concurrency := range []int{1, agent.DefaultMaxCommands} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) {
			e := startDeviceServer(t)
			id, key := e.register(t, e.token, "gateway-pi")
			watch := e.watchStatuses(t)
			ids := e.queueCommands(t, id, fullQueue)

			pool, err := agent.LoadCAFile(filepath.Join(e.dir, "tls-cert.pem"))
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			a, err := agent.New(agent.Config{URL: e.wsURL(), Key: key, RootCAs: pool, MaxConcurrentCommands: concurrency,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var order []int
			a.Handle("step", func(ctx context.Context, params json.RawMessage) (any, error) {
				var p struct{ N int }
				json.Unmarshal(params, &p)
				mu.Lock()
				order = append(order, p.N)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // some work
				return map[string]int{"done": p.N}, nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); <-done }()

			watch.waitTerminal(t, ids, "acked")
			e.assertNoneStranded(t, id, ids, "acked")
			if n := strings.Count(logs.String(), "msg=connected"); n != 1 {
				t.Errorf("the agent connected %d times, want 1 (closed by the server?)\n%s", n, logs.String())
			}
			if strings.Contains(logs.String(), "busy") || strings.Contains(logs.String(), "4004") {
				t.Errorf("agent log shows busy or 4004:\n%s", logs.String())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(order) != fullQueue {
				t.Fatalf("handler ran %d times, want %d", len(order), fullQueue)
			}
			if concurrency == 1 {
				for i, n := range order {
					if n != i {
						t.Fatalf("commands ran out of order: %v", order)
					}
				}
			}
		})
	}
}

// seedDevice is a raw WebSocket device in the seed firmware's manner: the
// key as the whole subprotocol header, and (here) an ack written the
// moment each command arrives.
type seedDevice struct {
	t       *testing.T
	c       *websocket.Conn
	welcome map[string]any
}

func (e *deviceEnv) seedConnect(t *testing.T, key string) *seedDevice {
	t.Helper()
	c := e.mustDial(t, key)
	return &seedDevice{t: t, c: c, welcome: readType(t, c, "welcome")}
}

// TestCommands_FullQueueBurstAcks: the same full queue answered by a
// device that acks every command the instant it arrives (a burst of 100
// acks, far past the frame limit of 40 + 20/s). First the device drops
// its connection after receiving commands without answering: they are
// sent again, first, on the next connection. Every command is acked in
// creation order, the owner sees each end live, and the connection is not
// closed. The welcome tells the window and result limit; no presence
// frames reach the device.
func TestCommands_FullQueueBurstAcks(t *testing.T) {
	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "esp32-burst")
	watch := e.watchStatuses(t)
	ids := e.queueCommands(t, id, fullQueue)

	d := e.seedConnect(t, key)
	limits, _ := d.welcome["limits"].(map[string]any)
	if limits["command_window"] != float64(8) || limits["max_result_bytes"] != float64(8192) {
		t.Fatalf("welcome limits = %v", limits)
	}
	// The window: exactly 8 arrive, then nothing until an ack.
	var first []string
	for range 8 {
		first = append(first, readType(t, d.c, "command")["id"].(string))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, extra, err := d.c.Read(ctx)
	cancel()
	if err == nil {
		t.Fatalf("a 9th frame arrived before any ack: %s", extra)
	}
	if strings.Join(first, ",") != strings.Join(ids[:8], ",") {
		t.Fatalf("first window %v, want %v", first, ids[:8])
	}
	d.c.CloseNow() // gone without answering: 8 stay delivered

	d = e.seedConnect(t, key)
	var got []string
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(got) < fullQueue {
		_, data, err := d.c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d commands: %v (close %d)", len(got), err, websocket.CloseStatus(err))
		}
		checkFrame(t, data)
		var m map[string]any
		json.Unmarshal(data, &m)
		switch m["type"] {
		case "command":
			cid := m["id"].(string)
			got = append(got, cid)
			b, _ := json.Marshal(map[string]any{"type": "ack", "id": cid, "ok": true, "result": "ok"})
			if err := d.c.Write(ctx, websocket.MessageText, b); err != nil {
				t.Fatal(err)
			}
		case "error":
			t.Fatalf("server error after %d acks: %v", len(got), m)
		case "presence", "presence_snapshot":
			t.Fatalf("a device received a chat frame: %v", m)
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("commands arrived out of order or twice:\n got %v\nwant %v", got, ids)
	}
	watch.waitTerminal(t, ids, "acked")
	e.assertNoneStranded(t, id, ids, "acked")
	// Still connected: a heartbeat with an id is answered.
	writeJSON(t, d.c, map[string]any{"type": "heartbeat", "id": "hb1", "device_id": id, "ts": 5, "free_heap": 1000})
	if m := readType(t, d.c, "ack"); m["id"] != "hb1" {
		t.Fatalf("after the burst: %v", m)
	}

	// An answer larger than the limit ends the command (failed, with the
	// reason) instead of leaving it delivered.
	st, body := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, map[string]any{"command": "dump"})
	if st != 201 {
		t.Fatalf("dump: %d %v", st, body)
	}
	cmd := readType(t, d.c, "command")
	writeJSON(t, d.c, map[string]any{"type": "ack", "id": cmd["id"], "ok": true, "result": strings.Repeat("x", 12000)})
	watch.waitTerminal(t, []string{cmd["id"].(string)}, "failed")
	_, body = e.get(t, "/api/v1/devices/"+id+"/commands/"+cmd["id"].(string), e.token)
	if msg, _ := body["command"].(map[string]any)["error"].(string); !strings.Contains(msg, "result too large") {
		t.Fatalf("oversized result: %v", body)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/testenv"
)

// The fault-injection suite: three `unhidra serve` processes on one
// PostgreSQL schema and a NATS server the test owns, senders on two nodes
// (together at least 150 messages/s), listeners on all three. Under each
// fault every listener that stayed connected must have received every
// stored message of the conversation live, exactly once, in seq order, and
// nothing the store lacks; every acknowledged message must be stored with
// its acknowledged seq.
//
// `make test` runs the short form; UNHIDRA_FAULT_LONG=1 (make fault-long)
// sends for longer and kills a node with SIGKILL ten times at random
// moments besides the deterministic commit-then-die run.

const faultRate = 95 // messages per second per sender; two senders (at least 150/s together, with margin)

func faultLong() bool { return os.Getenv("UNHIDRA_FAULT_LONG") != "" }

type faultCluster struct {
	t       *testing.T
	bin     string
	nats    *testenv.NATSServer
	common  []string
	dirs    [3]string
	procs   [3]*process
	clients [3]*http.Client
	token   string
}

func startFaultCluster(t *testing.T, bin string, env [3][]string) *faultCluster {
	fc := &faultCluster{t: t, bin: bin, nats: testenv.StartNATS(t)}
	fc.common = []string{"--store", testenv.PostgresDSN(t), "--bus", fc.nats.URL, "--bus-prefix", testenv.UniqueName("fault"),
		"--system-bot=false", "--drain-window", "100ms", "--max-conns-per-identity", "1000",
		"--conn-rate-per-identity", "1000", "--conn-burst-per-identity", "1000"}
	for i := range fc.dirs {
		fc.dirs[i] = t.TempDir()
		for _, f := range []string{"signing-keys.json", bus.ClusterKeyFile} {
			if i == 0 {
				break
			}
			keys, err := os.ReadFile(filepath.Join(fc.dirs[0], f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(fc.dirs[i], f), keys, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fc.start(i, env[i]...)
	}
	s := &server{url: fc.procs[0].url, client: fc.clients[0]}
	st, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "ops", "password": "crash test password"})
	if st != 200 {
		t.Fatalf("login: %d %v", st, body)
	}
	fc.token = body["access_token"].(string)
	return fc
}

func (fc *faultCluster) start(i int, env ...string) {
	fc.procs[i] = startProcessEnv(fc.t, fc.bin, fc.dirs[i], env, fc.common...)
	fc.clients[i] = trustingClient(fc.t, fc.dirs[i])
}

func (fc *faultCluster) dial(ctx context.Context, i int) (*websocket.Conn, error) {
	url := "wss" + strings.TrimPrefix(fc.procs[i].url, "https") + "/ws"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: fc.clients[i],
		Subprotocols: []string{"unhidra.v1", "bearer." + fc.token}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 22)
	return conn, nil
}

// history returns the conversation's stored messages after seq: seq → message ID.
func (fc *faultCluster) history(node int, after int64) map[int64]string {
	s := &server{url: fc.procs[node].url, client: fc.clients[node]}
	out := map[int64]string{}
	for {
		st, page := s.get(fc.t, fmt.Sprintf("/api/v1/channels/%s/messages?after=%d&limit=200", unhidra.GeneralChannelID, after), fc.token)
		if st != 200 {
			fc.t.Fatalf("history: %d %v", st, page)
		}
		for _, m := range page["messages"].([]any) {
			m := m.(map[string]any)
			seq := int64(m["seq"].(float64))
			if seq != after+1 {
				fc.t.Fatalf("history has seq %d after %d: a gap in storage", seq, after)
			}
			after = seq
			out[seq] = m["message_id"].(string)
		}
		if page["has_more"] != true {
			return out
		}
	}
}

// listener records the conversation's message frames one connection receives.
type listener struct {
	node int
	mu   sync.Mutex
	got  []int64          // seqs in arrival order
	ids  map[int64]string // seq → message ID (the first one seen)
	err  error            // why the connection ended early, if it did
	done chan struct{}
}

func (fc *faultCluster) listen(ctx context.Context, node int) *listener {
	conn, err := fc.dial(ctx, node)
	if err != nil {
		fc.t.Fatalf("listener on node %d: %v", node, err)
	}
	l := &listener{node: node, ids: map[int64]string{}, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(l.done)
		defer conn.CloseNow()
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				if ctx.Err() == nil {
					l.mu.Lock()
					l.err = err
					l.mu.Unlock()
				}
				return
			}
			var f struct {
				Type, Channel, MessageID string
				Seq                      int64
			}
			var raw map[string]any
			json.Unmarshal(data, &raw)
			f.Type, _ = raw["type"].(string)
			f.Channel, _ = raw["channel"].(string)
			f.MessageID, _ = raw["message_id"].(string)
			if s, ok := raw["seq"].(float64); ok {
				f.Seq = int64(s)
			}
			switch {
			case f.Type == "presence_snapshot":
				close(ready) // following its conversations now
			case f.Type == "message" && f.Channel == unhidra.GeneralChannelID:
				l.mu.Lock()
				l.got = append(l.got, f.Seq)
				if _, ok := l.ids[f.Seq]; !ok {
					l.ids[f.Seq] = f.MessageID
				}
				l.mu.Unlock()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		fc.t.Fatalf("listener on node %d: no presence_snapshot", node)
	}
	return l
}

func (l *listener) maxSeq() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m int64
	for _, s := range l.got {
		m = max(m, s)
	}
	return m
}

// sender sends at a fixed rate through one node, failing over to the
// others when its connection breaks, and re-sends every unacknowledged
// message with the same id until it is acknowledged.
type sender struct {
	name  string
	nodes []int // in order of preference

	mu      sync.Mutex
	acked   map[string]ackRecord
	pending map[string]bool // sent (or to send), not yet acknowledged
	sent    int
}

func (fc *faultCluster) runSender(ctx context.Context, s *sender, stopNew <-chan struct{}) {
	s.acked, s.pending = map[string]ackRecord{}, map[string]bool{}
	tick := time.NewTicker(time.Second / faultRate)
	defer tick.Stop()
	next := 0
	stopping := false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		node := s.nodes[attempt%len(s.nodes)]
		conn, err := fc.dial(ctx, node)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		retry := make(chan string, 4096)
		go func() { // acknowledgements and errors
			defer cancel()
			for {
				_, data, err := conn.Read(cctx)
				if err != nil {
					return
				}
				var f map[string]any
				json.Unmarshal(data, &f)
				id, _ := f["id"].(string)
				switch f["type"] {
				case "ack":
					s.mu.Lock()
					if s.pending[id] {
						delete(s.pending, id)
						s.acked[id] = ackRecord{f["message_id"].(string), int64(f["seq"].(float64))}
					}
					s.mu.Unlock()
				case "error":
					if id != "" {
						retry <- id
					}
				}
			}
		}()
		write := func(id string) error {
			b, _ := json.Marshal(map[string]any{"type": "send", "id": id, "channel": unhidra.GeneralChannelID, "body": id})
			wctx, wcancel := context.WithTimeout(cctx, 5*time.Second)
			defer wcancel()
			return conn.Write(wctx, websocket.MessageText, b)
		}
		// A new connection re-sends what is unacknowledged.
		s.mu.Lock()
		var again []string
		for id := range s.pending {
			again = append(again, id)
		}
		s.mu.Unlock()
		failed := false
		for _, id := range again {
			if write(id) != nil {
				failed = true
				break
			}
		}
		lastResend := time.Now()
		for !failed {
			select {
			case <-cctx.Done():
				failed = true
				continue
			case <-stopNew:
				stopNew, stopping = nil, true
				continue
			case id := <-retry:
				time.Sleep(50 * time.Millisecond)
				failed = write(id) != nil
				continue
			case <-tick.C:
			}
			if stopping {
				s.mu.Lock()
				left := len(s.pending)
				s.mu.Unlock()
				if left == 0 {
					cancel()
					conn.Close(websocket.StatusNormalClosure, "")
					return
				}
				if time.Since(lastResend) > 3*time.Second { // answers lost with a dead node
					lastResend = time.Now()
					failed = true // reconnect and re-send
				}
				continue
			}
			id := fmt.Sprintf("%s-%d", s.name, next)
			next++
			s.mu.Lock()
			s.pending[id] = true
			s.sent++
			s.mu.Unlock()
			failed = write(id) != nil
		}
		cancel()
		conn.CloseNow()
	}
}

type faultRun struct {
	duration time.Duration
	// fault runs after warm (on its own goroutine) while senders send.
	fault func(fc *faultCluster)
	warm  time.Duration
	// stayed lists the nodes whose listeners must stay connected.
	stayed []int
	env    [3][]string
}

func runFault(t *testing.T, bin string, r faultRun) {
	fc := startFaultCluster(t, bin, r.env)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ls []*listener
	for node := range 3 {
		ls = append(ls, fc.listen(ctx, node), fc.listen(ctx, node))
	}
	base := int64(len(fc.history(0, 0)))
	senders := []*sender{{name: "a", nodes: []int{0, 2}}, {name: "b", nodes: []int{1, 2, 0}}}
	stopNew := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Add(1)
		go func() { defer wg.Done(); fc.runSender(ctx, s, stopNew) }()
	}
	faultDone := make(chan struct{})
	go func() {
		defer close(faultDone)
		if r.fault != nil {
			time.Sleep(r.warm)
			r.fault(fc)
		}
	}()
	time.Sleep(r.duration)
	<-faultDone
	close(stopNew)
	sendersDone := make(chan struct{})
	go func() { wg.Wait(); close(sendersDone) }()
	select {
	case <-sendersDone:
	case <-time.After(60 * time.Second):
		for _, s := range senders {
			s.mu.Lock()
			t.Errorf("sender %s: %d still unacknowledged", s.name, len(s.pending))
			s.mu.Unlock()
		}
		t.FailNow()
	}
	node := r.stayed[0]
	stored := fc.history(node, base)
	var last int64
	for seq := range stored {
		last = max(last, seq)
	}
	// Wait until every listener that stayed has caught up.
	deadline := time.Now().Add(20 * time.Second)
	for _, l := range ls {
		if !contains(r.stayed, l.node) {
			continue
		}
		for l.maxSeq() < last && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond) // let duplicates, if any, arrive
	cancel()
	acked := 0
	for _, s := range senders {
		s.mu.Lock()
		for id, a := range s.acked {
			acked++
			if stored[a.seq] != a.messageID {
				t.Errorf("acknowledged %s (seq %d, %s) is not stored so", id, a.seq, a.messageID)
			}
		}
		s.mu.Unlock()
	}
	checked := 0
	for _, l := range ls {
		<-l.done
		if !contains(r.stayed, l.node) {
			continue
		}
		if l.err != nil {
			t.Errorf("listener on node %d was disconnected: %v", l.node, l.err)
			continue
		}
		checked++
		l.mu.Lock()
		want := base + 1
		bad := 0
		for _, seq := range l.got {
			if seq != want {
				if bad < 5 {
					t.Errorf("listener on node %d: got seq %d, want %d (duplicate, out of order or missing)", l.node, seq, want)
				}
				bad++
				want = max(want, seq+1)
				continue
			}
			want++
		}
		if got := want - 1; got != last {
			t.Errorf("listener on node %d: received up to seq %d, stored up to %d", l.node, got, last)
		}
		for seq, id := range l.ids {
			if stored[seq] != id {
				t.Errorf("listener on node %d: seq %d is %s live but %q in the store", l.node, seq, id, stored[seq])
			}
		}
		if bad > 0 {
			t.Errorf("listener on node %d: %d frames out of place of %d", l.node, bad, len(l.got))
		}
		l.mu.Unlock()
	}
	sent := 0
	for _, s := range senders {
		sent += s.sent
	}
	t.Logf("%d sent, %d acknowledged, %d stored (seq %d..%d), %d listeners checked", sent, acked, len(stored), base+1, last, checked)
	if float64(sent) < 150*r.duration.Seconds()*0.8 {
		t.Errorf("only %d messages in %v: the senders did not reach 150/s", sent, r.duration)
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// faultBinary is the server binary under test: UNHIDRA_FAULT_BIN (to run
// the suite against another build), or this tree built once.
func faultBinary(t *testing.T) string {
	if b := os.Getenv("UNHIDRA_FAULT_BIN"); b != "" {
		return b
	}
	return buildBinary(t)
}

// TestFault runs the three faults on one build of the binary.
func TestFault(t *testing.T) {
	bin := faultBinary(t)
	long := faultLong()

	// No fault: two nodes commit to one conversation concurrently; every
	// listener gets every message once and in seq order.
	t.Run("NoFault", func(t *testing.T) {
		d := 4 * time.Second
		if long {
			d = 30 * time.Second
		}
		runFault(t, bin, faultRun{duration: d, stayed: []int{0, 1, 2}})
	})

	// NATS is killed for 5 s and restarted while the senders keep sending.
	t.Run("NATSDown", func(t *testing.T) {
		d := 9 * time.Second
		if long {
			d = 30 * time.Second
		}
		runFault(t, bin, faultRun{duration: d, warm: 2 * time.Second, stayed: []int{0, 1, 2},
			fault: func(fc *faultCluster) {
				fc.nats.Stop()
				time.Sleep(5 * time.Second)
				fc.nats.Start()
			}})
	})

	// Node 1 kills itself (SIGKILL) right after a commit, before
	// acknowledging or publishing it; its sender re-sends the same ids
	// through node 2, and the listeners on nodes 0 and 2 still get every
	// message live. The long form then kills node 1 at random moments ten
	// times more, restarting it each time.
	t.Run("CommitThenDie", func(t *testing.T) {
		d := 5 * time.Second
		kills := 0
		if long {
			d, kills = 40*time.Second, 10
		}
		runFault(t, bin, faultRun{duration: d, warm: time.Second, stayed: []int{0, 2},
			env: [3][]string{nil, {"UNHIDRA_TEST_CRASH_AFTER_COMMIT=60"}, nil},
			fault: func(fc *faultCluster) {
				exited := make(chan error, 1)
				go func() { exited <- fc.procs[1].cmd.Wait() }() // the hook kills it
				var err error
				select {
				case err = <-exited:
				case <-time.After(30 * time.Second):
					t.Errorf("node 1 did not die after its 60th commit")
					fc.procs[1].cmd.Process.Kill()
					err = <-exited
				}
				if ws, ok := fc.procs[1].cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Errorf("node 1 did not die of SIGKILL after a commit: %v", err)
				}
				for range kills {
					fc.start(1)
					time.Sleep(time.Duration(500+rand.IntN(2000)) * time.Millisecond)
					fc.procs[1].cmd.Process.Kill()
					fc.procs[1].cmd.Wait()
				}
			}})
	})
}

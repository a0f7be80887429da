package bus

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// wire is a minimal in-memory bus: every node's subscribers of a subject
// receive what anyone publishes, synchronously, and tests can inject raw
// bytes as an outsider would.
type wire struct {
	mu   sync.Mutex
	subs map[string][]Handler
	sent [][]byte
}

func (w *wire) Publish(_ context.Context, subject string, data []byte) error {
	w.mu.Lock()
	hs := append([]Handler(nil), w.subs[subject]...)
	w.sent = append(w.sent, append([]byte(nil), data...))
	w.mu.Unlock()
	for _, h := range hs {
		h(append([]byte(nil), data...))
	}
	return nil
}

func (w *wire) Subscribe(subject string, h Handler) (Subscription, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = map[string][]Handler{}
	}
	w.subs[subject] = append(w.subs[subject], h)
	return nopSub{}, nil
}

func (w *wire) Close() error { return nil }

type nopSub struct{}

func (nopSub) Unsubscribe() error { return nil }

func testKeys(t *testing.T) *ClusterKeys {
	t.Helper()
	path := filepath.Join(t.TempDir(), ClusterKeyFile)
	ks, created, err := LoadOrCreateClusterKeys(path, time.Now())
	if err != nil || !created {
		t.Fatal(created, err)
	}
	return ks
}

func node(t *testing.T, w *wire, ks *ClusterKeys) *Sealed {
	t.Helper()
	s, err := NewSealed(w, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func collect(t *testing.T, s *Sealed, subject string) *[][]byte {
	var got [][]byte
	if _, err := s.Subscribe(subject, func(d []byte) { got = append(got, d) }); err != nil {
		t.Fatal(err)
	}
	return &got
}

func dropped(s *Sealed, reason string) int {
	var m dto.Metric
	s.dropped.WithLabelValues(reason).Write(&m)
	return int(m.GetCounter().GetValue())
}

func TestSealed_RoundTripBetweenNodes(t *testing.T) {
	w, ks := &wire{}, testKeys(t)
	a, b := node(t, w, ks), node(t, w, ks)
	got := collect(t, b, "chat.membership")
	for _, m := range []string{"one", "two", ""} {
		if err := a.Publish(context.Background(), "chat.membership", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if len(*got) != 3 || string((*got)[0]) != "one" || string((*got)[1]) != "two" || len((*got)[2]) != 0 {
		t.Fatalf("got %q", *got)
	}
	if bytes.Contains(w.sent[0], []byte("one")) {
		t.Fatal("the payload travels in clear")
	}
}

func TestSealed_DropsAndCounts(t *testing.T) {
	w, ks := &wire{}, testKeys(t)
	a, b := node(t, w, ks), node(t, w, ks)
	got := collect(t, b, "ctl.close")
	ctx := context.Background()

	// An outsider's raw JSON, as a NATS client with publish rights sends it.
	w.Publish(ctx, "ctl.close", []byte(`{"identity":"u_1","code":4001}`))
	w.Publish(ctx, "ctl.close", nil)
	w.Publish(ctx, "ctl.close", []byte{1, 200})
	// Another deployment's node: its own key.
	other := node(t, w, testKeys(t))
	other.Publish(ctx, "ctl.close", []byte("x"))
	// Our key id but a forged body.
	a.Publish(ctx, "ctl.other", []byte("legit"))
	forged := append([]byte(nil), w.sent[len(w.sent)-1]...)
	forged[len(forged)-1] ^= 1
	w.Publish(ctx, "ctl.close", forged)
	// A genuine message moved to another subject.
	w.Publish(ctx, "ctl.close", w.sent[len(w.sent)-2])
	// A genuine message replayed.
	a.Publish(ctx, "ctl.close", []byte("real"))
	w.Publish(ctx, "ctl.close", w.sent[len(w.sent)-1])

	if len(*got) != 1 || string((*got)[0]) != "real" {
		t.Fatalf("delivered %q, want only the genuine message once", *got)
	}
	for reason, want := range map[string]int{DropUnsealed: 3, DropKey: 1, DropForged: 2, DropReplay: 1} {
		if n := dropped(b, reason); n != want {
			t.Errorf("dropped{%s} = %d, want %d", reason, n, want)
		}
	}
}

// A node's own message replayed to it (NATS does not echo a node's
// messages, so only an outsider sends one back) is dropped: it would
// otherwise redo, for up to MaxAge, whatever the message did (a membership
// change undone since, for one).
func TestSealed_DropsReplayOfOwnMessage(t *testing.T) {
	w, ks := &wire{}, testKeys(t)
	a := node(t, w, ks)
	got := collect(t, a, "chat.membership")
	ctx := context.Background()
	if err := a.Publish(ctx, "chat.membership", []byte("added")); err != nil {
		t.Fatal(err)
	}
	w.Publish(ctx, "chat.membership", w.sent[len(w.sent)-1])
	if len(*got) != 1 || string((*got)[0]) != "added" {
		t.Fatalf("delivered %q, want the local delivery once", *got)
	}
	if n := dropped(a, DropReplay); n != 1 {
		t.Errorf("dropped{replay} = %d, want 1", n)
	}
}

func TestSealed_Stale(t *testing.T) {
	w, ks := &wire{}, testKeys(t)
	a, b := node(t, w, ks), node(t, w, ks)
	got := collect(t, b, "s")
	a.now = func() time.Time { return time.Now().Add(-MaxAge - time.Minute) }
	a.Publish(context.Background(), "s", []byte("old"))
	a.now = func() time.Time { return time.Now().Add(MaxAge + time.Minute) }
	a.Publish(context.Background(), "s", []byte("future"))
	if len(*got) != 0 || dropped(b, DropStale) != 2 {
		t.Fatalf("got %q, stale %d", *got, dropped(b, DropStale))
	}
}

// A rotation: the new key is added with a delay, copied to every node;
// until it activates nodes seal with the old one, both open everything,
// and a node still on the old file keeps working with the updated ones
// until the new key activates.
func TestSealed_RotationOverlap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ClusterKeyFile)
	now := time.Now()
	if _, err := AddClusterKey(path, now.Add(-48*time.Hour), 0, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	oldKeys, err := LoadClusterKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	nk, err := AddClusterKey(path, now, time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newKeys, err := LoadClusterKeys(path)
	if err != nil || len(newKeys.Keys) != 2 {
		t.Fatal(err, newKeys)
	}
	w := &wire{}
	oldNode, newNode := node(t, w, oldKeys), node(t, w, newKeys)
	gotOld, gotNew := collect(t, oldNode, "x"), collect(t, newNode, "x")
	newNode.Publish(context.Background(), "x", []byte("before activation"))
	if len(*gotOld) != 1 || len(*gotNew) != 1 {
		t.Fatalf("before activation: old node got %d, new node %d", len(*gotOld), len(*gotNew))
	}
	later := func() time.Time { return now.Add(2 * time.Hour) }
	newNode.now, oldNode.now = later, later
	newNode.Publish(context.Background(), "x", []byte("after"))
	if len(*gotNew) != 2 || dropped(oldNode, DropKey) != 1 {
		t.Fatalf("after activation: new node got %d, old node dropped %d", len(*gotNew), dropped(oldNode, DropKey))
	}
	if w.sent[1][1] != byte(len(nk.ID)) || string(w.sent[1][2:2+len(nk.ID)]) != nk.ID {
		t.Fatal("the activated key does not seal")
	}
	// The next rotation, a day after the second key activated, prunes
	// the first.
	if _, err := AddClusterKey(path, now.Add(27*time.Hour), time.Hour, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	ks, _ := LoadClusterKeys(path)
	if len(ks.Keys) != 2 || ks.Keys[0].ID != nk.ID {
		t.Fatalf("after pruning: %d keys", len(ks.Keys))
	}
}

func TestClusterKeys_FileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), ClusterKeyFile)
	if _, _, err := LoadOrCreateClusterKeys(path, time.Now()); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	os.Chmod(path, 0o644)
	if _, err := LoadClusterKeys(path); err == nil {
		t.Fatal("a world-readable keyring was accepted")
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte(`{"keys":[{"kid":"a","secret":"AAAA"}]}`), 0o600)
	if _, err := LoadClusterKeys(path); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func FuzzSealedOpen(f *testing.F) {
	ks := &ClusterKeys{Keys: []*ClusterKey{{ID: "k1", Secret: make([]byte, 32)}}}
	s, _ := NewSealed(&wire{}, ks, nil)
	f.Add([]byte{1, 2, 'k', '1', 0, 0})
	f.Add([]byte(`{"x":1}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if _, _, _, reason := s.open("a.b", msg, time.Now()); reason == "" {
			t.Fatalf("unsealed input %q opened", msg)
		}
	})
}

// TestReplayWindow: numbers arriving out of order (concurrent publishers)
// are accepted once each; repeats and numbers below the window are not.
func TestReplayWindow(t *testing.T) {
	var st senderState
	for _, seq := range []uint64{1, 3, 2, 5, 4, 70, 6, 69, 2000, 2000 - ReplayWindow + 1} {
		if !st.accept(seq) {
			t.Fatalf("fresh %d refused", seq)
		}
	}
	for _, seq := range []uint64{0, 1, 3, 70, 69, 2000, 2000 - ReplayWindow + 1, 2000 - ReplayWindow, 7} {
		if st.accept(seq) {
			t.Fatalf("%d accepted twice or below the window", seq)
		}
	}
	if !st.accept(1999) || st.accept(1999) {
		t.Fatal("1999 must be accepted exactly once")
	}
}

// TestSealed_HandlerPublishesDuringLocalDelivery: a handler may publish
// while the inner bus delivers to this node in the publisher's goroutine
// (the NATS bus does), from several goroutines at once, without deadlock
// and without a message dropped as a replay.
func TestSealed_HandlerPublishesDuringLocalDelivery(t *testing.T) {
	s, err := NewSealed(&serialWire{}, testKeys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := 0
	if _, err := s.Subscribe("b", func([]byte) { mu.Lock(); got++; mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe("a", func(data []byte) {
		if err := s.Publish(context.Background(), "b", data); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := s.Publish(context.Background(), "a", []byte("x")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got != 1600 {
		t.Fatalf("b received %d of 1600", got)
	}
}

// serialWire is a wire whose subscriptions take one message at a time,
// holding a lock across the handler, as the NATS bus's do.
type serialWire struct{ wire }

func (w *serialWire) Subscribe(subject string, h Handler) (Subscription, error) {
	var mu sync.Mutex
	return w.wire.Subscribe(subject, func(data []byte) {
		mu.Lock()
		defer mu.Unlock()
		h(data)
	})
}

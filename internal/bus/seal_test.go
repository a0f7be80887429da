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

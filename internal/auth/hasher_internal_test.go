package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

var hasherTestParams = PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// gatedDerive replaces argon2 with a stand-in that records each call and
// blocks until the test lets it through, so that queue states can be set up
// exactly. It runs inside a synctest bubble, where blocking is detectable.
type gatedDerive struct {
	gate chan struct{} // one receive per call let through

	mu    sync.Mutex
	calls []string // passwords, in the order derive started
	args  []deriveArgs

	running, peak atomic.Int64
}

type deriveArgs struct {
	saltLen, time, memory uint32
	threads               uint8
	keyLen                uint32
}

func newGatedDerive() *gatedDerive { return &gatedDerive{gate: make(chan struct{})} }

func (g *gatedDerive) derive(pw, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	n := g.running.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	g.mu.Lock()
	g.calls = append(g.calls, string(pw))
	g.args = append(g.args, deriveArgs{uint32(len(salt)), time, memory, threads, keyLen})
	g.mu.Unlock()
	<-g.gate
	g.running.Add(-1)
	return make([]byte, keyLen)
}

func (g *gatedDerive) snapshot() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.calls...)
}

func newGatedHasher(t *testing.T, cfg PasswordHasherConfig) (*PasswordHasher, *gatedDerive) {
	t.Helper()
	if cfg.Params == (PasswordParams{}) {
		cfg.Params = hasherTestParams
	}
	h, err := NewPasswordHasher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := newGatedDerive()
	h.derive = g.derive
	return h, g
}

func wantHasherUnavailable(t *testing.T, err error) {
	t.Helper()
	var e *unhidra.Error
	if !errors.As(err, &e) || e.Code != protocol.ErrUnavailable {
		t.Fatalf("err = %v, want *store.Error with code protocol.ErrUnavailable", err)
	}
	if e.RetryAfter <= 0 {
		t.Fatalf("RetryAfter = %d, want > 0", e.RetryAfter)
	}
}

func TestPasswordHasher_QueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h, g := newGatedHasher(t, PasswordHasherConfig{MaxConcurrent: 1, MaxQueue: 2, MaxWait: time.Hour})

		errs := make(chan error, 3)
		for i := 0; i < 3; i++ {
			go func() { _, err := h.Hash(ctx, "pw"); errs <- err }()
		}
		synctest.Wait()
		if h.InFlight() != 1 || h.Queued() != 2 {
			t.Fatalf("InFlight %d, Queued %d; want 1, 2", h.InFlight(), h.Queued())
		}

		// Full: the fourth caller is refused at once, without waiting.
		start := time.Now()
		_, _, err := h.Verify(ctx, "pw", PHC{Params: hasherTestParams, Salt: make([]byte, 16), Hash: make([]byte, 32)}.String())
		wantHasherUnavailable(t, err)
		if err := h.VerifyDummy(ctx, "pw"); err == nil {
			t.Fatal("VerifyDummy got through a full queue")
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("refusal waited %v", d)
		}
		if got := h.Rejected(); got != 2 {
			t.Fatalf("Rejected() = %d, want 2", got)
		}

		for i := 0; i < 3; i++ {
			g.gate <- struct{}{}
		}
		for i := 0; i < 3; i++ {
			if err := <-errs; err != nil {
				t.Fatalf("admitted caller: %v", err)
			}
		}
		if h.InFlight() != 0 || h.Queued() != 0 || h.PeakInFlight() != 1 || g.peak.Load() != 1 {
			t.Fatalf("after drain: InFlight %d, Queued %d, PeakInFlight %d, derive peak %d",
				h.InFlight(), h.Queued(), h.PeakInFlight(), g.peak.Load())
		}
	})
}

func TestPasswordHasher_NoQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, g := newGatedHasher(t, PasswordHasherConfig{MaxConcurrent: 1, MaxQueue: -1})
		done := make(chan error)
		go func() { _, err := h.Hash(context.Background(), "pw"); done <- err }()
		synctest.Wait()
		_, err := h.Hash(context.Background(), "pw")
		wantHasherUnavailable(t, err)
		g.gate <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestPasswordHasher_MaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h, g := newGatedHasher(t, PasswordHasherConfig{MaxConcurrent: 1, MaxQueue: 8, MaxWait: 3 * time.Second})
		go h.Hash(ctx, "blocker")
		synctest.Wait()

		start := time.Now()
		_, err := h.Hash(ctx, "waiter")
		wantHasherUnavailable(t, err)
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("gave up after %v, want MaxWait 3s", d)
		}
		if h.Queued() != 0 || h.Rejected() != 1 {
			t.Fatalf("Queued %d, Rejected %d; want 0, 1", h.Queued(), h.Rejected())
		}

		// A context deadline shorter than MaxWait wins, and is not overload.
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start = time.Now()
		_, err = h.Hash(dctx, "waiter")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("gave up after %v, want the 1s context deadline", d)
		}
		if h.Queued() != 0 || h.Rejected() != 1 {
			t.Fatalf("Queued %d, Rejected %d; want 0, 1", h.Queued(), h.Rejected())
		}
		g.gate <- struct{}{}
		synctest.Wait()
		if h.InFlight() != 0 {
			t.Fatalf("InFlight %d after blocker finished", h.InFlight())
		}
	})
}

func TestPasswordHasher_FIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h, g := newGatedHasher(t, PasswordHasherConfig{MaxConcurrent: 1, MaxQueue: 16, MaxWait: time.Hour})
		var wg sync.WaitGroup
		hash := func(pw string) {
			wg.Go(func() {
				if _, err := h.Hash(ctx, pw); err != nil {
					t.Error(err)
				}
			})
		}
		order := []string{"first", "a", "b", "c", "d", "e"}
		for _, pw := range order {
			hash(pw)
			synctest.Wait() // each caller is queued before the next arrives
		}
		// Each time a slot is freed, a newcomer arrives at the same moment;
		// it must not take the slot ahead of the queue.
		for range order {
			g.gate <- struct{}{}
			hash("late")
		}
		for range order {
			g.gate <- struct{}{}
		}
		wg.Wait()
		got := g.snapshot()
		if len(got) != 12 {
			t.Fatalf("%d derives, want 12", len(got))
		}
		for i, pw := range order {
			if got[i] != pw {
				t.Fatalf("derive order %q, want prefix %q", got, order)
			}
		}
	})
}

func TestPasswordHasher_Bound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h, err := NewPasswordHasher(PasswordHasherConfig{Params: hasherTestParams, MaxConcurrent: 3, MaxQueue: 1000, MaxWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var running, peak atomic.Int64
		h.derive = func(pw, salt []byte, tm, mem uint32, th uint8, kl uint32) []byte {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(100 * time.Millisecond) // fake time: instant, but interleaves callers
			running.Add(-1)
			return make([]byte, kl)
		}
		var wg sync.WaitGroup
		for i := 0; i < 200; i++ {
			wg.Go(func() {
				if _, err := h.Hash(ctx, "pw"); err != nil {
					t.Error(err)
				}
			})
		}
		start := time.Now()
		wg.Wait()
		if got := peak.Load(); got != 3 {
			t.Fatalf("peak concurrent derives %d, want exactly MaxConcurrent 3", got)
		}
		if got := h.PeakInFlight(); got != 3 {
			t.Fatalf("PeakInFlight() = %d, want 3", got)
		}
		// 200 hashes of 100 ms, 3 at a time: ceil(200/3) rounds.
		if d, want := time.Since(start), 67*100*time.Millisecond; d != want {
			t.Fatalf("took %v of fake time, want %v", d, want)
		}
	})
}

// TestPasswordHasher_VerifyDummyCost checks that VerifyDummy performs the same
// Argon2 computation, with the same cost parameters, as Verify of a wrong
// password against a hash made with the current parameters, and that it
// goes through the same bound.
func TestPasswordHasher_VerifyDummyCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		params := PasswordParams{MemoryKiB: 1000, Time: 4, Threads: 2, SaltLen: 24, KeyLen: 48}
		h, g := newGatedHasher(t, PasswordHasherConfig{Params: params, MaxConcurrent: 1, MaxQueue: -1})
		close(g.gate) // let every derive through
		phc, err := h.Hash(ctx, "the real password")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.Verify(ctx, "a wrong guess", phc); err != nil {
			t.Fatal(err)
		}
		if err := h.VerifyDummy(ctx, "a wrong guess"); err != nil {
			t.Fatal(err)
		}
		g.mu.Lock()
		args := append([]deriveArgs(nil), g.args...)
		g.mu.Unlock()
		want := deriveArgs{24, 4, 1000, 2, 48}
		if len(args) != 3 || args[1] != want || args[2] != want {
			t.Fatalf("derive args (hash, verify, dummy) = %+v, want verify and dummy both %+v", args, want)
		}
		if g.calls[2] != "a wrong guess" {
			t.Fatalf("dummy derived %q", g.calls[2])
		}
	})
}

func TestPasswordHasher_RetryAfter(t *testing.T) {
	h, err := NewPasswordHasher(PasswordHasherConfig{Params: hasherTestParams, MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.retryAfter(); got != 1 {
		t.Errorf("idle, no samples: %d, want 1", got)
	}
	h.observe(500 * time.Millisecond)
	h.queued.Store(31)
	h.inFlight.Store(2)
	// (31 + 2 + 1) × 0.5 s / 2 = 8.5 s → 9.
	if got := h.retryAfter(); got != 9 {
		t.Errorf("backlog 34 at 0.5 s on 2 slots: %d, want 9", got)
	}
	h.queued.Store(10000)
	if got := h.retryAfter(); got != 60 {
		t.Errorf("huge backlog: %d, want the 60 s cap", got)
	}
}

// TestPasswordHasher_FairPerSource: a flood from one source fills the queue;
// a caller from another source is still admitted (the flood's newest waiter
// makes room) and is served next, ahead of the flood's backlog.
func TestPasswordHasher_FairPerSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, g := newGatedHasher(t, PasswordHasherConfig{MaxConcurrent: 1, MaxQueue: 8, MaxWait: time.Hour})
		flood := WithSource(context.Background(), "10.0.0.1")
		var wg sync.WaitGroup
		var floodRefused atomic.Int64
		for i := range 12 {
			wg.Go(func() {
				if _, err := h.Hash(flood, "flood"+string(rune('a'+i))); err != nil {
					floodRefused.Add(1)
				}
			})
			synctest.Wait()
		}
		// 1 running + 8 queued; 3 refused at once.
		if n := floodRefused.Load(); n != 3 {
			t.Fatalf("flood refused %d, want 3", n)
		}
		var victimErr error
		wg.Go(func() { _, victimErr = h.Hash(WithSource(context.Background(), "10.0.0.9"), "victim") })
		synctest.Wait()
		if n := floodRefused.Load(); n != 4 {
			t.Fatalf("flood refused %d after the victim arrived, want 4 (its newest waiter evicted)", n)
		}
		// Let the running flood hash finish: the victim goes next.
		g.gate <- struct{}{}
		synctest.Wait()
		if got := g.snapshot(); len(got) != 2 || got[1] != "victim" {
			t.Fatalf("derive order %q, want the victim second", got)
		}
		close(g.gate)
		wg.Wait()
		if victimErr != nil {
			t.Fatalf("victim: %v", victimErr)
		}
		if h.Queued() != 0 || h.InFlight() != 0 {
			t.Fatalf("after drain: queued %d, in flight %d", h.Queued(), h.InFlight())
		}
	})
}

// TestPasswordHasher_RoundRobin: with several sources waiting, slots go to
// each source in turn, not in arrival order.
func TestPasswordHasher_RoundRobin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, g := newGatedHasher(t, PasswordHasherConfig{MaxConcurrent: 1, MaxQueue: 16, MaxWait: time.Hour})
		var wg sync.WaitGroup
		hash := func(src, pw string) {
			wg.Go(func() {
				if _, err := h.Hash(WithSource(context.Background(), src), pw); err != nil {
					t.Error(err)
				}
			})
			synctest.Wait()
		}
		hash("a", "a0") // runs
		hash("a", "a1")
		hash("a", "a2")
		hash("a", "a3")
		hash("b", "b1")
		hash("c", "c1")
		close(g.gate)
		wg.Wait()
		got := g.snapshot()
		want := []string{"a0", "b1", "c1", "a1", "a2", "a3"}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("derive order %q, want %q", got, want)
			}
		}
	})
}

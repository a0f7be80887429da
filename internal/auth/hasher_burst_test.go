package auth

import (
	"context"
	"errors"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// burstMemoryBudget is what the burst test allows the whole process to hold
// from the OS: "well under" the 1 GiB the design allows for password hashing.
const burstMemoryBudget = 512 << 20

// hasherMemSampler records peak memory (via runtime/metrics, which does not stop
// the world) and peak values of gauges while a test runs.
type hasherMemSampler struct {
	stop chan struct{}
	done chan struct{}

	// Written by the sampling goroutine, read after done is closed.
	peakHeapInUse int64 // heap spans in use: live and not-yet-swept objects plus fragmentation
	peakMapped    int64 // all memory the runtime has mapped, minus what it returned to the OS
	peakGauges    []int64
	samples       int
}

func startHasherMemSampler(every time.Duration, gauges ...func() int64) *hasherMemSampler {
	s := &hasherMemSampler{stop: make(chan struct{}), done: make(chan struct{}), peakGauges: make([]int64, len(gauges))}
	ms := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	sample := func() {
		metrics.Read(ms)
		s.peakHeapInUse = max(s.peakHeapInUse, int64(ms[0].Value.Uint64()+ms[1].Value.Uint64()))
		s.peakMapped = max(s.peakMapped, int64(ms[2].Value.Uint64()-ms[3].Value.Uint64()))
		for i, g := range gauges {
			s.peakGauges[i] = max(s.peakGauges[i], g())
		}
		s.samples++
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			sample()
			select {
			case <-s.stop:
				sample()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *hasherMemSampler) finish() *hasherMemSampler {
	close(s.stop)
	<-s.done
	return s
}

func hasherHeapAllocs() uint64 {
	m := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}

// TestPasswordHasher_Burst fires 1,000 simultaneous Verify calls at the
// default parameters (m=48 MiB each) at a hasher bounded to 2 concurrent
// hashes, a queue of 32 and a 1 s wait. Unbounded, the burst would allocate
// 1,000 × 48 MiB ≈ 47 GiB (measured below per hash, and demonstrated on a
// smaller scale by TestPasswordHasher_BurstUnboundedControl). Bounded, the
// process must stay under burstMemoryBudget, some calls must succeed, the
// rest must get protocol.ErrUnavailable with a RetryAfter, and no more than 2 hashes may
// ever run at once.
func TestPasswordHasher_Burst(t *testing.T) {
	const (
		callers       = 1000
		maxConcurrent = 2
		maxQueue      = 32
		pw            = "correct horse battery staple"
	)
	ctx := context.Background()
	h, err := NewPasswordHasher(PasswordHasherConfig{
		Params:        DefaultPasswordParams(),
		MaxConcurrent: maxConcurrent,
		MaxQueue:      maxQueue,
		MaxWait:       time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Count real Argon2 computations independently of the hasher's counters.
	var running, peakRunning atomic.Int64
	h.derive = func(pw, salt []byte, tm, mem uint32, th uint8, kl uint32) []byte {
		n := running.Add(1)
		for p := peakRunning.Load(); n > p && !peakRunning.CompareAndSwap(p, n); p = peakRunning.Load() {
		}
		defer running.Add(-1)
		return argon2.IDKey(pw, salt, tm, mem, th, kl)
	}

	before := hasherHeapAllocs()
	phc, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	perHash := hasherHeapAllocs() - before
	unbounded := uint64(callers) * perHash
	t.Logf("one hash allocates %.1f MiB; %d unbounded would need %.1f GiB", float64(perHash)/(1<<20), callers, float64(unbounded)/(1<<30))
	if perHash < 48<<20 || unbounded < 4*burstMemoryBudget {
		t.Fatalf("a hash allocated only %d bytes: the memory assertion below would prove nothing", perHash)
	}

	debug.FreeOSMemory() // start from a clean baseline whatever ran before
	s := startHasherMemSampler(2*time.Millisecond,
		func() int64 { return int64(h.InFlight()) },
		func() int64 { return int64(h.Queued()) },
	)

	var (
		wg                       sync.WaitGroup
		gate                     = make(chan struct{})
		mu                       sync.Mutex
		succeeded, unavailable   int
		badRetry, wrong, otherEr int
		firstOther               error
	)
	for i := 0; i < callers; i++ {
		wg.Go(func() {
			<-gate
			ok, _, err := h.Verify(ctx, pw, phc)
			mu.Lock()
			defer mu.Unlock()
			var e *unhidra.Error
			switch {
			case err == nil && ok:
				succeeded++
			case err == nil:
				wrong++
			case errors.As(err, &e) && e.Code == protocol.ErrUnavailable:
				unavailable++
				if e.RetryAfter <= 0 {
					badRetry++
				}
			default:
				otherEr++
				if firstOther == nil {
					firstOther = err
				}
			}
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	elapsed := time.Since(start)
	m := s.finish()

	t.Logf("%d callers in %v: %d verified, %d protocol.ErrUnavailable; peak heap in use %.1f MiB, peak mapped %.1f MiB (%d samples); peak in-flight %d (derive-counted %d), peak queued %d",
		callers, elapsed.Round(time.Millisecond), succeeded, unavailable,
		float64(m.peakHeapInUse)/(1<<20), float64(m.peakMapped)/(1<<20), m.samples,
		m.peakGauges[0], peakRunning.Load(), m.peakGauges[1])

	if otherEr > 0 || wrong > 0 {
		t.Fatalf("%d unexpected errors (first: %v), %d wrong results", otherEr, firstOther, wrong)
	}
	if succeeded < 1 || unavailable < 1 || succeeded+unavailable != callers {
		t.Fatalf("%d verified + %d protocol.ErrUnavailable, want some of each totalling %d", succeeded, unavailable, callers)
	}
	if badRetry > 0 {
		t.Fatalf("%d protocol.ErrUnavailable errors without a positive RetryAfter", badRetry)
	}
	if got := h.Rejected(); got != uint64(unavailable) {
		t.Fatalf("Rejected() = %d, want %d", got, unavailable)
	}
	if p := peakRunning.Load(); p > maxConcurrent || h.PeakInFlight() > maxConcurrent || m.peakGauges[0] > maxConcurrent {
		t.Fatalf("concurrent hashes peaked at %d (InFlight sampled %d, PeakInFlight %d), bound %d",
			p, m.peakGauges[0], h.PeakInFlight(), maxConcurrent)
	}
	if m.peakGauges[1] > maxQueue {
		t.Fatalf("queue peaked at %d, bound %d", m.peakGauges[1], maxQueue)
	}
	if m.peakHeapInUse > burstMemoryBudget || m.peakMapped > burstMemoryBudget {
		t.Fatalf("peak memory: heap in use %d MiB, mapped %d MiB; budget %d MiB",
			m.peakHeapInUse>>20, m.peakMapped>>20, burstMemoryBudget>>20)
	}
	if h.InFlight() != 0 || h.Queued() != 0 {
		t.Fatalf("after the burst: InFlight %d, Queued %d", h.InFlight(), h.Queued())
	}
}

// TestPasswordHasher_BurstUnboundedControl shows that the sampler and budget
// of TestPasswordHasher_Burst catch an unbounded design: a mere 16 concurrent
// Argon2id computations at m=48 MiB (t=1 to keep it short) without a hasher
// push the heap past burstMemoryBudget; the 1,000 of the burst would need
// ~47 GiB.
func TestPasswordHasher_BurstUnboundedControl(t *testing.T) {
	const n = 16 // 16 × 48 MiB = 768 MiB
	p := DefaultPasswordParams()
	debug.FreeOSMemory()
	s := startHasherMemSampler(2 * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			argon2.IDKey([]byte("pw"), []byte("somesaltsomesalt"), 1, p.MemoryKiB, p.Threads, p.KeyLen)
		})
	}
	wg.Wait()
	m := s.finish()
	t.Logf("%d unbounded hashes: peak heap in use %.1f MiB, peak mapped %.1f MiB", n,
		float64(m.peakHeapInUse)/(1<<20), float64(m.peakMapped)/(1<<20))
	if m.peakHeapInUse <= burstMemoryBudget || m.peakMapped <= burstMemoryBudget {
		t.Fatalf("unbounded burst peaked at %d MiB in use, %d MiB mapped: the sampler would not catch it",
			m.peakHeapInUse>>20, m.peakMapped>>20)
	}
	debug.FreeOSMemory() // give the memory back before other tests run
}

package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// ErrPHCTooCostly is returned by PasswordHasher.Verify for a stored hash
// whose memory parameter exceeds the hasher's MaxVerifyMemoryKiB. Like
// ErrPHCInvalid it marks server-side data, not client input.
var ErrPHCTooCostly = errors.New("argon2id PHC string exceeds the hasher's memory limit")

// Causes of protocol.ErrUnavailable, for the log (the client sees only the message).
var (
	errHasherQueueFull = errors.New("password hasher queue full")
	errHasherWaitLong  = errors.New("password hasher queue wait exceeded")
)

// PasswordHasherConfig configures a PasswordHasher. The zero value is valid:
// each zero field means the default documented on it.
type PasswordHasherConfig struct {
	// Params are used for new hashes, for the dummy hash and for NeedsRehash.
	// Zero means DefaultPasswordParams().
	Params PasswordParams
	// MaxConcurrent bounds the hashes computed at once, and with it the
	// memory they hold (MaxConcurrent × Params.MemoryKiB). Zero means
	// runtime.GOMAXPROCS(0): one hash per core, since each is CPU-bound.
	// A stored hash with p > 1 (made elsewhere) runs p goroutines within its
	// one slot.
	MaxConcurrent int
	// MaxQueue bounds the callers waiting for a slot; further callers get
	// protocol.ErrUnavailable at once. Zero means 32; a negative value means no one
	// waits.
	MaxQueue int
	// MaxWait bounds how long a caller waits for a slot before getting
	// protocol.ErrUnavailable. Zero means 2 s.
	MaxWait time.Duration
	// MaxVerifyMemoryKiB is the largest memory parameter Verify accepts in a
	// stored hash (ParsePHC alone allows up to 1 GiB), so that stored strings
	// cannot raise the memory bound. Zero means the larger of
	// 4 × Params.MemoryKiB and 256 MiB, which leaves room to lower Params
	// without locking out users whose hashes are not yet rehashed.
	MaxVerifyMemoryKiB uint32
}

// PasswordHasher hashes and verifies passwords with Argon2id under a
// concurrency bound, so that a burst of logins cannot exhaust memory or CPU:
// at most MaxConcurrent hashes run at once, at most MaxQueue callers wait, in
// turn (FIFO per source, round-robin between sources; see WithSource), for
// at most MaxWait, and everyone else gets a *store.Error
// with code protocol.ErrUnavailable and a RetryAfter hint, at once.
//
// Memory held by hashing is thus at most MaxConcurrent × MaxVerifyMemoryKiB
// (512 MiB with the defaults on 2 cores; MaxConcurrent × 48 MiB for hashes
// made with the default parameters).
//
// A hash, once started, runs to completion (about 100 ms at the defaults)
// even if its caller's context ends, because Argon2 cannot be interrupted and
// its memory stays in use until it returns.
//
// All methods are safe for concurrent use.
type PasswordHasher struct {
	// Static after construction.
	params        PasswordParams
	maxConcurrent int
	maxQueue      int
	maxWait       time.Duration
	maxVerifyMem  uint32
	dummy         PHC        // current params, random salt and hash; never matches
	derive        deriveFunc // argon2.IDKey; tests substitute it

	mu      sync.Mutex // guards the scheduler below
	running int        // slots in use
	waiting int        // callers queued
	queues  map[string]*sourceQueue
	order   []*sourceQueue // sources with waiters, in order of arrival
	// Per source with a hash running or waiting: grants so far (the
	// sequence number of its latest) and hashes running. The waiting source
	// served least recently goes next.
	grants    uint64
	lastGrant map[string]uint64
	runningBy map[string]int

	inFlight  atomic.Int64
	queued    atomic.Int64
	rejected  atomic.Uint64
	avgNanos  atomic.Int64 // moving average of one hash's duration
	peakSlots atomic.Int64 // high-water mark of inFlight
}

// NewPasswordHasher returns a hasher configured by cfg. It fails only when
// cfg.Params are out of bounds (an error wrapping ErrPHCInvalid) or the
// system's random source fails.
func NewPasswordHasher(cfg PasswordHasherConfig) (*PasswordHasher, error) {
	if cfg.Params == (PasswordParams{}) {
		cfg.Params = DefaultPasswordParams()
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, fmt.Errorf("auth: password hasher params: %w", err)
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	switch {
	case cfg.MaxQueue == 0:
		cfg.MaxQueue = 32
	case cfg.MaxQueue < 0:
		cfg.MaxQueue = 0
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 2 * time.Second
	}
	if cfg.MaxVerifyMemoryKiB == 0 {
		cfg.MaxVerifyMemoryKiB = max(4*cfg.Params.MemoryKiB, 256*1024)
	}

	// The dummy needs no real hash: its only job is to cost a verification
	// at the current parameters, and random bytes match no password.
	dummy := PHC{
		Params: cfg.Params,
		Salt:   make([]byte, cfg.Params.SaltLen),
		Hash:   make([]byte, cfg.Params.KeyLen),
	}
	if _, err := rand.Read(dummy.Salt); err != nil {
		return nil, fmt.Errorf("auth: dummy salt: %w", err)
	}
	if _, err := rand.Read(dummy.Hash); err != nil {
		return nil, fmt.Errorf("auth: dummy hash: %w", err)
	}

	return &PasswordHasher{
		params:        cfg.Params,
		maxConcurrent: cfg.MaxConcurrent,
		maxQueue:      cfg.MaxQueue,
		maxWait:       cfg.MaxWait,
		maxVerifyMem:  cfg.MaxVerifyMemoryKiB,
		dummy:         dummy,
		derive:        argon2.IDKey,
		queues:        make(map[string]*sourceQueue),
		lastGrant:     make(map[string]uint64),
		runningBy:     make(map[string]int),
	}, nil
}

// Params returns the parameters new hashes are made with.
func (h *PasswordHasher) Params() PasswordParams { return h.params }

// Hash is HashPassword with the hasher's parameters under its concurrency
// bound. It blocks while queued. Besides HashPassword's errors it returns
// protocol.ErrUnavailable (with RetryAfter) when the hasher is saturated, or an error
// wrapping ctx.Err() when ctx ends while queued.
func (h *PasswordHasher) Hash(ctx context.Context, pw string) (string, error) {
	normalised, err := normalizePassword(pw, passwordHardMaxBytes)
	if err != nil {
		return "", err
	}
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading salt: %w", err)
	}
	var phc string
	err = h.run(ctx, func() { phc = hashWithSalt(h.derive, normalised, salt, h.params) })
	return phc, err
}

// Verify is VerifyPassword under the hasher's concurrency bound. needsRehash
// reports whether the password matched and phc was made with parameters other
// than the hasher's, so the caller should store a fresh Hash of pw. It blocks
// while queued. Besides VerifyPassword's errors it returns ErrPHCTooCostly,
// protocol.ErrUnavailable (with RetryAfter) when the hasher is saturated, or an error
// wrapping ctx.Err() when ctx ends while queued.
func (h *PasswordHasher) Verify(ctx context.Context, pw, phc string) (ok, needsRehash bool, err error) {
	parsed, err := ParsePHC(phc)
	if err != nil {
		return false, false, fmt.Errorf("auth: stored password hash: %w", err)
	}
	if parsed.Params.MemoryKiB > h.maxVerifyMem {
		return false, false, fmt.Errorf("auth: stored password hash: m=%d KiB > %d KiB: %w",
			parsed.Params.MemoryKiB, h.maxVerifyMem, ErrPHCTooCostly)
	}
	normalised, err := normalizePassword(pw, passwordHardMaxBytes)
	if err != nil {
		return false, false, nil // can never have been set; see VerifyPassword
	}
	if err := h.run(ctx, func() { ok = verifyParsed(h.derive, normalised, parsed) }); err != nil {
		return false, false, err
	}
	return ok, ok && parsed.Params != h.params, nil
}

// VerifyDummy costs what Verify costs for a wrong password against a hash
// made with the hasher's current parameters, and discards the result. Call it
// when the user does not exist, so that a login for an unknown name takes as
// long (and queues the same way) as one with a wrong password, and response
// times do not reveal which names exist. It returns only the queueing errors
// of Verify.
func (h *PasswordHasher) VerifyDummy(ctx context.Context, pw string) error {
	normalised, err := normalizePassword(pw, passwordHardMaxBytes)
	if err != nil {
		return nil // Verify returns at once here too
	}
	return h.run(ctx, func() { verifyParsed(h.derive, normalised, h.dummy) })
}

// InFlight returns the number of hashes running now (at most MaxConcurrent).
func (h *PasswordHasher) InFlight() int { return int(h.inFlight.Load()) }

// Queued returns the number of callers waiting for a slot now.
func (h *PasswordHasher) Queued() int { return int(h.queued.Load()) }

// Rejected returns how many calls have got protocol.ErrUnavailable since construction,
// because the queue was full or the wait exceeded MaxWait.
func (h *PasswordHasher) Rejected() uint64 { return h.rejected.Load() }

// PeakInFlight returns the most hashes that have run at once since
// construction.
func (h *PasswordHasher) PeakInFlight() int { return int(h.peakSlots.Load()) }

// run calls f while holding a slot.
func (h *PasswordHasher) run(ctx context.Context, f func()) error {
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release(sourceOf(ctx))
	start := time.Now()
	f()
	h.observe(time.Since(start))
	return nil
}

type sourceKey struct{}

// WithSource returns a context whose hashing work is queued under source
// (the client's address): the hasher's queue is fair between sources, so a
// flood from some addresses cannot crowd out the others.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

func sourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// waiter is one caller queued for a slot.
type waiter struct {
	ready    chan struct{} // closed once granted or evicted
	granted  bool          // guarded by PasswordHasher.mu
	rejected bool          // evicted to make room for another source
}

// sourceQueue holds the waiters of one source, oldest first.
type sourceQueue struct {
	source  string
	waiters []*waiter
}

// acquire takes a slot, queueing fairly: each source (see WithSource) has
// its own FIFO queue and freed slots go round-robin over the sources that
// have waiters, the one served least recently first. When the queue is full, a newcomer takes the place of the
// newest waiter of the longest queue if that queue is longer than the
// newcomer's would be; otherwise the newcomer is refused. So a source with
// nobody waiting is refused only when MaxQueue distinct sources each have
// one waiter, and once queued it is served after at most one hash per other
// waiting source: within ceil(sources/MaxConcurrent) hash durations.
func (h *PasswordHasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("auth: password hasher: %w", err)
	}
	src := sourceOf(ctx)
	h.mu.Lock()
	if h.running < h.maxConcurrent && h.waiting == 0 {
		h.grantLocked(src)
		h.mu.Unlock()
		h.enter()
		return nil
	}
	if h.maxQueue == 0 {
		h.mu.Unlock()
		return h.reject(errHasherQueueFull)
	}
	q := h.queues[src]
	if h.waiting >= h.maxQueue {
		mine := 0
		if q != nil {
			mine = len(q.waiters)
		}
		var big *sourceQueue
		for _, o := range h.order {
			if big == nil || len(o.waiters) > len(big.waiters) {
				big = o
			}
		}
		if big == nil || len(big.waiters) <= mine+1 {
			h.mu.Unlock()
			return h.reject(errHasherQueueFull)
		}
		last := big.waiters[len(big.waiters)-1]
		big.waiters = big.waiters[:len(big.waiters)-1]
		last.rejected = true
		close(last.ready)
		h.waiting--
	}
	if q == nil {
		q = &sourceQueue{source: src}
		h.queues[src] = q
		h.order = append(h.order, q)
	}
	w := &waiter{ready: make(chan struct{})}
	q.waiters = append(q.waiters, w)
	h.waiting++
	h.queued.Store(int64(h.waiting))
	h.mu.Unlock()

	t := time.NewTimer(h.maxWait)
	defer t.Stop()
	var cause error
	select {
	case <-w.ready:
	case <-t.C:
		cause = errHasherWaitLong
	case <-ctx.Done():
		cause = ctx.Err()
	}
	h.mu.Lock()
	switch {
	case w.granted && cause == nil:
		h.mu.Unlock()
		h.enter()
		return nil
	case w.granted:
		// Granted just as we gave up: pass the slot on.
		h.releaseLocked(src)
	case w.rejected:
		cause = errHasherQueueFull
	default:
		h.removeLocked(src, w)
	}
	h.queued.Store(int64(h.waiting))
	h.mu.Unlock()
	if cause == ctx.Err() && cause != nil {
		return fmt.Errorf("auth: waiting for password hasher: %w", cause)
	}
	return h.reject(cause)
}

// removeLocked takes a waiter that gave up out of its source's queue.
func (h *PasswordHasher) removeLocked(src string, w *waiter) {
	q := h.queues[src]
	if q == nil {
		return
	}
	for i, o := range q.waiters {
		if o == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			h.waiting--
			break
		}
	}
	if len(q.waiters) == 0 {
		h.dropQueueLocked(q)
	}
}

func (h *PasswordHasher) dropQueueLocked(q *sourceQueue) {
	delete(h.queues, q.source)
	for i, o := range h.order {
		if o == q {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
	h.forgetLocked(q.source)
}

// forgetLocked drops a source's accounting once it has nothing running or
// waiting, so the maps stay as small as the queue.
func (h *PasswordHasher) forgetLocked(src string) {
	if h.runningBy[src] == 0 && h.queues[src] == nil {
		delete(h.runningBy, src)
		delete(h.lastGrant, src)
	}
}

func (h *PasswordHasher) grantLocked(src string) {
	h.running++
	h.runningBy[src]++
	h.grants++
	h.lastGrant[src] = h.grants
}

func (h *PasswordHasher) releaseLocked(src string) {
	h.running--
	if h.runningBy[src]--; h.runningBy[src] <= 0 {
		h.runningBy[src] = 0
		h.forgetLocked(src)
	}
	h.dispatchLocked()
}

// dispatchLocked hands free slots to waiters: each to the waiting source
// served least recently (sources never served first, in arrival order).
func (h *PasswordHasher) dispatchLocked() {
	for h.running < h.maxConcurrent && h.waiting > 0 && len(h.order) > 0 {
		q := h.order[0]
		for _, o := range h.order[1:] {
			if h.lastGrant[o.source] < h.lastGrant[q.source] {
				q = o
			}
		}
		w := q.waiters[0]
		q.waiters = q.waiters[1:]
		h.waiting--
		h.grantLocked(q.source)
		w.granted = true
		close(w.ready)
		if len(q.waiters) == 0 {
			h.dropQueueLocked(q)
		}
	}
	h.queued.Store(int64(h.waiting))
}

func (h *PasswordHasher) enter() {
	n := h.inFlight.Add(1)
	for {
		peak := h.peakSlots.Load()
		if n <= peak || h.peakSlots.CompareAndSwap(peak, n) {
			return
		}
	}
}

func (h *PasswordHasher) release(src string) {
	// Decrement before freeing the slot, so that InFlight never exceeds
	// MaxConcurrent even momentarily.
	h.inFlight.Add(-1)
	h.mu.Lock()
	h.releaseLocked(src)
	h.mu.Unlock()
}

// observe folds one hash's duration into the moving average (weight 1/8).
// Concurrent updates may lose one another's samples; the average is only a
// hint for RetryAfter.
func (h *PasswordHasher) observe(d time.Duration) {
	old := h.avgNanos.Load()
	if old == 0 {
		h.avgNanos.Store(int64(d))
		return
	}
	h.avgNanos.Store(old + (int64(d)-old)/8)
}

func (h *PasswordHasher) reject(cause error) error {
	h.rejected.Add(1)
	return &unhidra.Error{
		Code:       protocol.ErrUnavailable,
		Message:    "The server is busy checking passwords; try again shortly.",
		RetryAfter: h.retryAfter(),
		Err:        cause,
	}
}

// retryAfter estimates in whole seconds (1 to 60) how long the current
// backlog takes to drain.
func (h *PasswordHasher) retryAfter() int64 {
	avg := time.Duration(h.avgNanos.Load())
	if avg <= 0 {
		avg = 200 * time.Millisecond // no sample yet: a pessimistic default
	}
	backlog := h.queued.Load() + h.inFlight.Load() + 1
	d := time.Duration(backlog) * avg / time.Duration(h.maxConcurrent)
	secs := int64((d + time.Second - 1) / time.Second)
	return min(max(secs, 1), 60)
}

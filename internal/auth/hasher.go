package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
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
// arrival order, for at most MaxWait, and everyone else gets a *store.Error
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

	slots chan struct{} // a token per running hash; capacity maxConcurrent

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
		slots:         make(chan struct{}, cfg.MaxConcurrent),
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
	defer h.release()
	start := time.Now()
	f()
	h.observe(time.Since(start))
	return nil
}

func (h *PasswordHasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("auth: password hasher: %w", err)
	}
	select {
	case h.slots <- struct{}{}:
		h.enter()
		return nil
	default:
	}
	// Count ourselves in before checking, so that concurrent arrivals cannot
	// all see room for one more.
	if h.queued.Add(1) > int64(h.maxQueue) {
		h.queued.Add(-1)
		return h.reject(errHasherQueueFull)
	}
	t := time.NewTimer(h.maxWait)
	defer t.Stop()
	// Go's runtime hands a freed buffer slot to the longest-blocked sender,
	// so the queue is FIFO and a newcomer's non-blocking send above cannot
	// overtake it. The spec does not promise this; TestPasswordHasher_FIFO
	// checks it.
	select {
	case h.slots <- struct{}{}:
		h.queued.Add(-1)
		h.enter()
		return nil
	case <-t.C:
		h.queued.Add(-1)
		return h.reject(errHasherWaitLong)
	case <-ctx.Done():
		h.queued.Add(-1)
		return fmt.Errorf("auth: waiting for password hasher: %w", ctx.Err())
	}
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

func (h *PasswordHasher) release() {
	// Decrement before freeing the slot, so that InFlight never exceeds
	// MaxConcurrent even momentarily.
	h.inFlight.Add(-1)
	<-h.slots
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

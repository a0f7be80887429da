package agent

import (
	"math"
	"time"
)

// Backoff is the reconnect schedule: the n-th consecutive failed attempt
// (n from 0) waits Initial×Multiplier^n, at most Max, with jitter so a
// fleet that lost its server together does not return together.
// The zero value is the seed firmware's schedule: 5 s, ×2, 60 s cap, ±30 %.
type Backoff struct {
	Initial    time.Duration // zero: 5 s
	Max        time.Duration // zero: 60 s; bounds the delay after jitter
	Multiplier float64       // zero: 2
	// Jitter is the relative spread around the delay: 0.3 means ±30 %.
	// Zero means 0.3; a negative value disables jitter.
	Jitter float64
	// FullJitter draws the delay uniformly from [0, delay) instead
	// (the "full jitter" scheme), which spreads a reconnect storm widest.
	FullJitter bool
}

// Defaults of Backoff.
const (
	DefaultBackoffInitial = 5 * time.Second
	DefaultBackoffMax     = 60 * time.Second
	DefaultMultiplier     = 2.0
	DefaultJitter         = 0.3
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultMultiplier
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultJitter
	case b.Jitter < 0:
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Delay returns the wait before reconnect attempt n (0 for the first
// retry), drawing jitter from rnd, which returns values in [0, 1).
// Max caps the wait after jitter: at the cap the waits spread over
// [Max×(1−Jitter), Max] (42–60 s by default), so no wait exceeds Max.
func (b Backoff) Delay(n int, rnd func() float64) time.Duration {
	b = b.withDefaults()
	if n < 0 {
		n = 0
	}
	base := float64(b.Initial) * math.Pow(b.Multiplier, float64(min(n, 64)))
	base = math.Min(base, float64(b.Max))
	r := rnd()
	if r < 0 || r >= 1 || math.IsNaN(r) {
		r = 0.5 // a broken source must not produce absurd waits
	}
	var d float64
	if b.FullJitter {
		d = base * r
	} else {
		d = math.Min(base*(1+b.Jitter*(2*r-1)), float64(b.Max))
	}
	return time.Duration(d)
}

// Package backoff is the exponential backoff with jitter shared by the
// server's reconnecting and restarting parts (the Go client's reconnects,
// the ML supervisor's worker restarts). The public agent keeps its own
// (agent/backoff.go): it depends on nothing outside the standard library,
// the WebSocket library and protocol, so that firmware-sized builds stay
// small, and its full-jitter mode is tuned for large device fleets.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter: Initial, multiplied by
// Factor after each failure, at most Max, each delay spread by ±Jitter.
type Backoff struct {
	Initial time.Duration // default 500 ms
	Max     time.Duration // default 30 s
	Factor  float64       // default 2
	Jitter  float64       // fraction, default 0.3 (±30 %)

	// Rand returns numbers in [0,1); nil means math/rand/v2 (tests set it).
	Rand func() float64

	attempt int
}

func (b *Backoff) defaults() {
	if b.Initial <= 0 {
		b.Initial = 500 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Factor < 1 {
		b.Factor = 2
	}
	if b.Jitter < 0 || b.Jitter >= 1 {
		b.Jitter = 0.3
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	b.defaults()
	d := float64(b.Initial)
	for i := 0; i < b.attempt && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	b.attempt++
	// Spread by ±Jitter so that clients dropped together come back apart.
	d *= 1 + b.Jitter*(2*b.Rand()-1)
	return time.Duration(d)
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

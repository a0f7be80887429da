package mlbridge

import (
	"math/rand/v2"
	"time"
)

// backoff computes restart delays: min, 2·min, 4·min… capped at max, each
// spread by ±jitter (a fraction; ≤ 0 means none) so that workers failing
// together do not restart in lockstep.
type backoff struct {
	min, max time.Duration
	jitter   float64
	n        int // failures in a row
}

func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	if b.jitter > 0 {
		f := 1 + b.jitter*(2*rand.Float64()-1)
		d = time.Duration(float64(d) * f)
	}
	return d
}

func (b *backoff) reset() { b.n = 0 }

package mlbridge

import (
	"slices"
	"time"
)

const latencyWindow = 256

// latencies keeps the most recent call durations of a worker for
// percentiles, and an EWMA. Guarded by the supervisor's mutex.
type latencies struct {
	ring [latencyWindow]time.Duration
	n    int // total recorded
	ewma time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.ring[l.n%latencyWindow] = d
	l.n++
	if l.n == 1 {
		l.ewma = d
	} else {
		l.ewma += (d - l.ewma) / 8
	}
}

// percentiles returns the p50 and p99 of the recorded window (zero when
// empty).
func (l *latencies) percentiles() (p50, p99 time.Duration) {
	k := min(l.n, latencyWindow)
	if k == 0 {
		return 0, 0
	}
	s := slices.Clone(l.ring[:k])
	slices.Sort(s)
	return s[(k-1)*50/100], s[(k-1)*99/100]
}

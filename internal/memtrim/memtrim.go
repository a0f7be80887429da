// Package memtrim returns the memory a burst of connections freed to the
// operating system once the burst is over.
//
// A connection storm (thousands of TLS handshakes, account and membership
// reads) allocates far more than the connections keep: the Go runtime frees
// it at the next GC but returns the pages to the OS only gradually, so the
// process stays tens of MiB larger than its live heap for minutes after the
// storm (measured: 2,000 devices left 30 MiB of idle heap unreleased, 15 KiB
// per device). Trimmer watches the connection count and, once it has moved
// by at least Threshold since the last trim and then stayed put for Quiet,
// runs debug.FreeOSMemory (a GC plus an immediate scavenge) once. Steady
// traffic never triggers it; only a change in the number of connections does.
package memtrim

import (
	"context"
	"runtime/debug"
	"time"
)

// Trimmer decides when to trim. Zero fields get defaults.
type Trimmer struct {
	// Count returns the current number of connections.
	Count func() int
	// Threshold is how far the count must move since the last trim
	// (default 256).
	Threshold int
	// Quiet is how long the count must stay unchanged (default 2 s).
	Quiet time.Duration
	// Tick is how often the count is sampled (default 500 ms).
	Tick time.Duration
	// Free releases memory; default debug.FreeOSMemory. Tests replace it.
	Free func()

	lastTrim, lastSeen int
	stableSince        time.Time
}

func (t *Trimmer) defaults() {
	if t.Threshold <= 0 {
		t.Threshold = 256
	}
	if t.Quiet <= 0 {
		t.Quiet = 2 * time.Second
	}
	if t.Tick <= 0 {
		t.Tick = 500 * time.Millisecond
	}
	if t.Free == nil {
		t.Free = debug.FreeOSMemory
	}
}

// Observe takes one sample of the count at now and trims if a burst has
// just ended. It reports whether it trimmed.
func (t *Trimmer) Observe(n int, now time.Time) bool {
	t.defaults()
	if n != t.lastSeen || t.stableSince.IsZero() {
		t.lastSeen, t.stableSince = n, now
		return false
	}
	moved := n - t.lastTrim
	if moved < 0 {
		moved = -moved
	}
	if moved < t.Threshold || now.Sub(t.stableSince) < t.Quiet {
		return false
	}
	t.Free()
	t.lastTrim = n
	return true
}

// Run samples Count every Tick until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	t.defaults()
	tick := time.NewTicker(t.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.Observe(t.Count(), now)
		}
	}
}

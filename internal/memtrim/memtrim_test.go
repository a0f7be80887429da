package memtrim

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestObserve_TrimsOnceAfterABurst(t *testing.T) {
	frees := 0
	tr := &Trimmer{Threshold: 100, Quiet: 2 * time.Second, Free: func() { frees++ }}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	steps := []struct {
		s     float64
		n     int
		trims int
	}{
		{0, 0, 0}, {1, 0, 0}, {3, 0, 0}, // idle, nothing moved
		{4, 50, 0}, {5, 150, 0}, {6, 300, 0}, // a burst in progress
		{7, 300, 0}, {7.9, 300, 0}, // stable, not for long enough
		{8.1, 300, 1},              // 2 s after the count settled: trim
		{10, 300, 1}, {20, 300, 1}, // once
		{21, 350, 1}, {25, 350, 1}, // a small change: no trim
		{26, 100, 1}, {27, 100, 1}, {28.1, 100, 2}, // a disconnect storm: trim again
	}
	for _, st := range steps {
		tr.Observe(st.n, at(st.s))
		if frees != st.trims {
			t.Fatalf("at %vs with %d conns: %d trims, want %d", st.s, st.n, frees, st.trims)
		}
	}
}

func TestRun_StopsWithContextAndTrims(t *testing.T) {
	defer goleak.VerifyNone(t)
	var n atomic.Int64
	var frees atomic.Int64
	tr := &Trimmer{Count: func() int { return int(n.Load()) }, Threshold: 10, Quiet: 20 * time.Millisecond,
		Tick: 5 * time.Millisecond, Free: func() { frees.Add(1); runtime.GC() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	n.Store(50)
	deadline := time.Now().Add(5 * time.Second)
	for frees.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if frees.Load() != 1 {
		t.Fatalf("%d trims, want 1", frees.Load())
	}
}

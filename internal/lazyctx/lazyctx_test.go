package lazyctx

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

type ctxKey struct{}

// lazyDeadline behaves like context.WithDeadline whether or not Done was
// called before the end came.
func TestLazyDeadline(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(10 * time.Second): // a hang, not a measurement
			return false
		}
	}
	parent := context.WithValue(context.Background(), ctxKey{}, "v")

	t.Run("running", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(time.Hour))
		defer c.release()
		if c.Err() != nil || c.Value(ctxKey{}) != "v" {
			t.Fatalf("Err %v, Value %v", c.Err(), c.Value(ctxKey{}))
		}
		if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Fatalf("Deadline %v %v", d, ok)
		}
		select {
		case <-c.Done():
			t.Fatal("done before its deadline")
		default:
		}
	})
	t.Run("deadline without Done", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(time.Millisecond))
		defer c.release()
		time.Sleep(5 * time.Millisecond)
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err %v", c.Err())
		}
		if !closed(c.Done()) || !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("Done not closed or Err %v", c.Err())
		}
	})
	t.Run("deadline with Done", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(20*time.Millisecond))
		defer c.release()
		if !closed(c.Done()) || !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("Done not closed or Err %v", c.Err())
		}
	})
	t.Run("parent cancelled", func(t *testing.T) {
		p, cancel := context.WithCancel(parent)
		c := withLazyDeadline(p, time.Now().Add(time.Hour))
		defer c.release()
		done := c.Done()
		cancel()
		if !closed(done) || !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("Done not closed or Err %v", c.Err())
		}
		p2, cancel2 := context.WithCancel(parent)
		cancel2()
		if c2 := withLazyDeadline(p2, time.Now().Add(time.Hour)); !errors.Is(c2.Err(), context.Canceled) || !closed(c2.Done()) {
			t.Fatalf("cancelled parent before Done: Err %v", c2.Err())
		}
	})
	t.Run("earlier parent deadline", func(t *testing.T) {
		p, cancel := context.WithDeadline(parent, time.Now().Add(time.Minute))
		defer cancel()
		c := withLazyDeadline(p, time.Now().Add(time.Hour))
		defer c.release()
		if d, _ := c.Deadline(); time.Until(d) > time.Minute {
			t.Fatalf("Deadline %v is after the parent's", d)
		}
	})
	t.Run("released", func(t *testing.T) {
		c := withLazyDeadline(parent, time.Now().Add(time.Hour))
		done := c.Done()
		c.release()
		if !closed(done) || !errors.Is(c.Err(), context.Canceled) {
			t.Fatalf("Done not closed or Err %v", c.Err())
		}
		c2 := withLazyDeadline(parent, time.Now().Add(time.Hour))
		c2.release()
		if !errors.Is(c2.Err(), context.Canceled) || !closed(c2.Done()) {
			t.Fatalf("released before Done: Err %v", c2.Err())
		}
	})
}

// A child context of a lazy one registers with it like a child of a
// standard context, without a goroutine of its own, and ends with it.
func TestLazyDeadline_ChildWithoutGoroutine(t *testing.T) {
	for _, end := range []string{"release", "deadline"} {
		t.Run(end, func(t *testing.T) {
			d := time.Hour
			if end == "deadline" {
				d = 50 * time.Millisecond
			}
			lazy, release := WithTimeout(context.Background(), d)
			defer release()
			before := runtime.NumGoroutine()
			child, cancel := context.WithCancel(lazy)
			defer cancel()
			if n := runtime.NumGoroutine(); n != before {
				t.Fatalf("goroutines %d -> %d: the child watches its parent from a goroutine", before, n)
			}
			if end == "release" {
				release()
			}
			select {
			case <-child.Done():
			case <-time.After(10 * time.Second): // a hang, not a measurement
				t.Fatal("the child did not end with its lazy parent")
			}
			want := context.Canceled
			if end == "deadline" {
				want = context.DeadlineExceeded
			}
			if !errors.Is(child.Err(), want) {
				t.Fatalf("child Err = %v, want %v", child.Err(), want)
			}
		})
	}
}

// Done, Err and Value may race (the race detector checks the lock-free
// reads), and every Done returns the one channel of the context it made.
func TestLazyDeadline_ConcurrentUse(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	ctx, release := WithTimeout(parent, time.Hour)
	const n = 8
	chans := make(chan (<-chan struct{}), n)
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			if ctx.Value(ctxKey{}) != "v" || ctx.Err() != nil {
				t.Error("a value or error changed before the end")
			}
			chans <- ctx.Done()
		}()
	}
	for range n {
		<-done
	}
	close(chans)
	first := <-chans
	for ch := range chans {
		if ch != first {
			t.Fatal("Done returned two channels")
		}
	}
	release()
	<-first
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("Err after release = %v", ctx.Err())
	}
}

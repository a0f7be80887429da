// Package lazyctx provides a deadline context for calls that usually return
// without waiting on their context.
package lazyctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// WithDeadline is context.WithDeadline for a call that usually returns
// without ever waiting on its context: a WebSocket handshake's
// authentication or chat's connect, whose store reads happen only on a
// cache miss. context.WithDeadline starts a timer and registers with the
// parent at once (about 3 % of a handshake's CPU, each); here both happen
// only if Done is called. Deadline, Err and Value answer without them. Call
// the returned function when the call returned, as with the standard one.
func WithDeadline(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	c := withLazyDeadline(parent, d)
	return c, c.release
}

// WithTimeout is WithDeadline(parent, time.Now().Add(timeout)).
func WithTimeout(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return WithDeadline(parent, time.Now().Add(timeout))
}

type lazyDeadline struct {
	parent   context.Context
	deadline time.Time

	// made is the context the first Done made; read without the lock
	// (Value is called on every context lookup of the call).
	made atomic.Pointer[context.Context]

	mu       sync.Mutex
	cancel   context.CancelFunc // made's; guarded by mu
	released bool               // guarded by mu
}

func withLazyDeadline(parent context.Context, d time.Time) *lazyDeadline {
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		d = pd
	}
	return &lazyDeadline{parent: parent, deadline: d}
}

func (c *lazyDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazyDeadline) Done() <-chan struct{} {
	if ctx := c.made.Load(); ctx != nil {
		return (*ctx).Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx := c.made.Load(); ctx != nil {
		return (*ctx).Done()
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	c.cancel = cancel
	if c.released {
		cancel()
	}
	c.made.Store(&ctx)
	return ctx.Done()
}

func (c *lazyDeadline) Err() error {
	if ctx := c.made.Load(); ctx != nil {
		return (*ctx).Err()
	}
	c.mu.Lock()
	released := c.released
	c.mu.Unlock()
	// Without a Done, nothing was told of an end: report the first
	// that applies (after a release, nobody should be asking).
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	if released {
		return context.Canceled
	}
	return nil
}

// Value answers from the context Done made, once there is one: it is the
// parent's values plus the standard library's own marker of a cancelable
// context, by which a child context (context.WithCancel of this one, which
// calls Done first) registers with it directly instead of starting a
// goroutine to watch it.
func (c *lazyDeadline) Value(key any) any {
	if ctx := c.made.Load(); ctx != nil {
		return (*ctx).Value(key)
	}
	return c.parent.Value(key)
}

// release ends the context, like the CancelFunc of context.WithDeadline.
func (c *lazyDeadline) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	if c.cancel != nil {
		c.cancel()
	}
}

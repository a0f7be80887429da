// Package local is the in-process bus of a single node: Publish hands the
// message to this node's subscribers directly.
package local

import (
	"context"
	"sync"

	"github.com/unhidra/unhidra/internal/bus"
)

// Bus is an in-process bus. The zero value is ready to use.
type Bus struct {
	mu     sync.RWMutex
	subs   map[string]map[*subscription]struct{} // guarded by mu
	closed bool                                  // guarded by mu
}

var _ bus.Bus = (*Bus)(nil)

type subscription struct {
	b       *Bus
	subject string
	h       bus.Handler
	mu      sync.Mutex // serialises deliveries, as on a NATS subscription
}

// Publish delivers data to this node's subscribers of subject before it
// returns, in the caller's goroutine.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := bus.ValidSubject(subject); err != nil {
		return err
	}
	b.mu.RLock()
	targets := make([]*subscription, 0, len(b.subs[subject]))
	for s := range b.subs[subject] {
		targets = append(targets, s)
	}
	b.mu.RUnlock()
	for _, s := range targets {
		s.mu.Lock()
		s.h(data)
		s.mu.Unlock()
	}
	return nil
}

// Subscribe registers h for subject.
func (b *Bus) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidSubject(subject); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = make(map[string]map[*subscription]struct{})
	}
	s := &subscription{b: b, subject: subject, h: h}
	if b.subs[subject] == nil {
		b.subs[subject] = make(map[*subscription]struct{})
	}
	b.subs[subject][s] = struct{}{}
	return s, nil
}

func (s *subscription) Unsubscribe() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	delete(s.b.subs[s.subject], s)
	if len(s.b.subs[s.subject]) == 0 {
		delete(s.b.subs, s.subject)
	}
	return nil
}

// Close drops every subscription.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs, b.closed = nil, true
	return nil
}

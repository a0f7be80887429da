package auth

import (
	"sync"
	"time"
)

// Sign-in throttling (see Service.Login) keeps three kinds of state, all in
// memory and per node:
//
//   - failures per (account name, address): after LockoutThreshold of them
//     that pair waits LockoutBase, doubling per further failure up to
//     LockoutMax. Only the address that failed waits.
//   - failures per account name from anywhere (LoginPerAccount): past it,
//     only addresses with a recent successful sign-in of that account may
//     try. It slows a distributed guesser; it never locks the owner out of
//     an address they signed in from.
//   - addresses with a recent successful sign-in, per account.
//
// Every key is the name as typed (normalised), whether or not an account
// has it, so known and unknown names give the same answers.

// pairFailures counts failures per key with exponential backoff.
type pairFailures struct {
	threshold      int
	base, maxDelay time.Duration
	maxKeys        int

	mu sync.Mutex
	m  map[string]*pairState
}

type pairState struct {
	fails int
	until time.Time // locked until
	last  time.Time
}

func newPairFailures(threshold int, base, maxDelay time.Duration, maxKeys int) *pairFailures {
	return &pairFailures{threshold: threshold, base: base, maxDelay: maxDelay, maxKeys: maxKeys, m: make(map[string]*pairState)}
}

// locked reports how long key must still wait (0: not locked).
func (p *pairFailures) locked(key string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.m[key]; st != nil && now.Before(st.until) {
		return st.until.Sub(now)
	}
	return 0
}

// fail records a failure and returns the new lock duration (0: none) and
// the failure count.
func (p *pairFailures) fail(key string, now time.Time) (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.m[key]
	if st != nil && now.Sub(st.last) > 2*p.maxDelay {
		st = nil // quiet long enough: start over
	}
	if st == nil {
		p.evictLocked(now)
		st = &pairState{}
		p.m[key] = st
	}
	st.fails++
	st.last = now
	over := st.fails - p.threshold
	if over < 0 {
		return 0, st.fails
	}
	d := p.base << min(over, 30)
	if d > p.maxDelay || d <= 0 {
		d = p.maxDelay
	}
	st.until = now.Add(d)
	return d, st.fails
}

func (p *pairFailures) reset(key string) {
	p.mu.Lock()
	delete(p.m, key)
	p.mu.Unlock()
}

// evictLocked keeps the map under maxKeys: stale entries first, then any.
func (p *pairFailures) evictLocked(now time.Time) {
	if len(p.m) < p.maxKeys {
		return
	}
	for k, st := range p.m {
		if now.Sub(st.last) > 2*p.maxDelay && now.After(st.until) {
			delete(p.m, k)
		}
	}
	for k := range p.m {
		if len(p.m) < p.maxKeys {
			break
		}
		delete(p.m, k)
	}
}

// expiringSet remembers keys until a deadline, at most maxKeys of them.
type expiringSet struct {
	maxKeys int
	mu      sync.Mutex
	m       map[string]time.Time
}

func newExpiringSet(maxKeys int) *expiringSet {
	return &expiringSet{maxKeys: maxKeys, m: make(map[string]time.Time)}
}

func (s *expiringSet) add(key string, until time.Time, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= s.maxKeys {
		for k, t := range s.m {
			if now.After(t) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < s.maxKeys {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[key] = until
}

func (s *expiringSet) has(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[key]
	return ok && now.Before(t)
}

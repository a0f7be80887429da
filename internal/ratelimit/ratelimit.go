// Package ratelimit provides token buckets: a single Bucket, and Keyed, a
// bounded set of buckets by key (IP address, account name, identity) that
// forgets idle keys so attackers cannot grow it without limit.
//
// Time is passed in explicitly, so refill rates are tested exactly, with no
// sleeping.
package ratelimit

import (
	"container/list"
	"sync"
	"time"
)

// Limit is a token bucket's shape: Burst tokens at most, refilled at one
// token per Every. A zero Limit allows everything.
type Limit struct {
	Burst int
	Every time.Duration
}

// Unlimited reports whether l lets everything through.
func (l Limit) Unlimited() bool { return l.Burst <= 0 || l.Every <= 0 }

// Bucket is one token bucket, kept as GCRA's "theoretical arrival time" in
// integer nanoseconds, so refill is exact (no floating-point drift). The
// zero value is unusable; use NewBucket. It is not safe for concurrent use
// (Keyed guards its buckets).
type Bucket struct {
	limit Limit
	// tat is when the bucket will be full again; at or before now it is full.
	tat time.Time
}

// NewBucket returns a full bucket.
func NewBucket(l Limit, now time.Time) Bucket { return Bucket{limit: l, tat: now} }

// Allow takes n tokens if available. When not, it reports how long until
// they will be.
func (b *Bucket) Allow(now time.Time, n int) (ok bool, retryAfter time.Duration) {
	if b.limit.Unlimited() {
		return true, 0
	}
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(time.Duration(n) * b.limit.Every)
	capacity := time.Duration(b.limit.Burst) * b.limit.Every
	if over := next.Sub(now) - capacity; over > 0 {
		return false, over
	}
	b.tat = next
	return true, 0
}

// Tokens returns the whole tokens available at now.
func (b *Bucket) Tokens(now time.Time) int {
	if !b.tat.After(now) {
		return b.limit.Burst
	}
	return b.limit.Burst - int((b.tat.Sub(now)+b.limit.Every-1)/b.limit.Every)
}

// full reports whether the bucket has refilled completely: such a bucket
// is indistinguishable from a new one and can be forgotten.
func (b *Bucket) full(now time.Time) bool { return !b.tat.After(now) }

// Keyed is a set of buckets with the same Limit, one per key, holding at
// most MaxKeys. When full, the least recently used key is evicted; buckets
// that have refilled completely are dropped first because forgetting them
// changes nothing. It is safe for concurrent use.
type Keyed struct {
	limit   Limit
	maxKeys int

	mu      sync.Mutex
	entries map[string]*list.Element // guarded by mu
	lru     list.List                // of *entry, most recent at front; guarded by mu
}

type entry struct {
	key    string
	bucket Bucket
}

// NewKeyed returns a Keyed limiter. maxKeys <= 0 means 100,000.
func NewKeyed(l Limit, maxKeys int) *Keyed {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	return &Keyed{limit: l, maxKeys: maxKeys, entries: make(map[string]*list.Element)}
}

// Allow takes one token from key's bucket.
func (k *Keyed) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	return k.AllowN(key, now, 1)
}

// AllowN takes n tokens from key's bucket.
func (k *Keyed) AllowN(key string, now time.Time, n int) (bool, time.Duration) {
	if k == nil || k.limit.Unlimited() {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.get(key, now)
	return e.bucket.Allow(now, n)
}

// Peek reports whether key could take one token now, without taking it.
func (k *Keyed) Peek(key string, now time.Time) (bool, time.Duration) {
	if k == nil || k.limit.Unlimited() {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	el, ok := k.entries[key]
	if !ok {
		return true, 0
	}
	b := el.Value.(*entry).bucket // a copy: Peek must not spend
	return b.Allow(now, 1)
}

// Reset forgets key (e.g. after a successful login).
func (k *Keyed) Reset(key string) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if el, ok := k.entries[key]; ok {
		k.lru.Remove(el)
		delete(k.entries, key)
	}
}

// Len returns how many keys are held.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.entries)
}

func (k *Keyed) get(key string, now time.Time) *entry {
	if el, ok := k.entries[key]; ok {
		k.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	if len(k.entries) >= k.maxKeys {
		k.evict(now)
	}
	e := &entry{key: key, bucket: NewBucket(k.limit, now)}
	k.entries[key] = k.lru.PushFront(e)
	return e
}

// evict drops refilled buckets from the cold end (a bounded look), or the
// least recently used one if none has refilled.
func (k *Keyed) evict(now time.Time) {
	dropped := 0
	el := k.lru.Back()
	for i := 0; el != nil && i < 64; i++ {
		prev := el.Prev()
		if e := el.Value.(*entry); e.bucket.full(now) {
			k.lru.Remove(el)
			delete(k.entries, e.key)
			dropped++
		}
		el = prev
	}
	if dropped == 0 {
		if back := k.lru.Back(); back != nil {
			k.lru.Remove(back)
			delete(k.entries, back.Value.(*entry).key)
		}
	}
}

// Sweep forgets every bucket that has refilled completely. Call it
// periodically to keep memory proportional to recent activity.
func (k *Keyed) Sweep(now time.Time) int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for el := k.lru.Back(); el != nil; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.bucket.full(now) {
			k.lru.Remove(el)
			delete(k.entries, e.key)
			n++
		}
		el = prev
	}
	return n
}

package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ratelimit"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBucket_RefillRate(t *testing.T) {
	b := ratelimit.NewBucket(ratelimit.Limit{Burst: 3, Every: 10 * time.Second}, t0)
	for i := range 3 {
		if ok, _ := b.Allow(t0, 1); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, retry := b.Allow(t0, 1)
	if ok || retry != 10*time.Second {
		t.Fatalf("empty bucket: ok=%v retry=%v, want refused with 10s", ok, retry)
	}
	// 9.999 s later: still not a whole token.
	if ok, retry := b.Allow(t0.Add(9999*time.Millisecond), 1); ok || retry != time.Millisecond {
		t.Fatalf("before refill: ok=%v retry=%v", ok, retry)
	}
	// Exactly one token per 10 s: over 100 s, 10 tokens and no more.
	allowed := 0
	for s := 1; s <= 100; s++ {
		if ok, _ := b.Allow(t0.Add(time.Duration(s)*time.Second), 1); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("allowed %d requests over 100 s at 1 per 10 s, want 10", allowed)
	}
	// Refill never exceeds the burst.
	if got := b.Tokens(t0.Add(24 * time.Hour)); got != 3 {
		t.Fatalf("after a day: %v tokens, want burst 3", got)
	}
}

func TestBucket_TimeGoingBackwardsGivesNothing(t *testing.T) {
	b := ratelimit.NewBucket(ratelimit.Limit{Burst: 1, Every: time.Second}, t0)
	b.Allow(t0, 1)
	if ok, _ := b.Allow(t0.Add(-time.Hour), 1); ok {
		t.Fatal("a clock step backwards must not refill")
	}
}

func TestKeyed_KeysAreIndependent(t *testing.T) {
	k := ratelimit.NewKeyed(ratelimit.Limit{Burst: 1, Every: time.Minute}, 10)
	if ok, _ := k.Allow("a", t0); !ok {
		t.Fatal("a refused")
	}
	if ok, _ := k.Allow("a", t0); ok {
		t.Fatal("a allowed twice")
	}
	if ok, _ := k.Allow("b", t0); !ok {
		t.Fatal("b refused because of a")
	}
	if ok, _ := k.Peek("a", t0.Add(time.Minute)); !ok {
		t.Fatal("a not refilled after a minute")
	}
	k.Reset("a")
	if ok, _ := k.Allow("a", t0); !ok {
		t.Fatal("Reset did not forget a")
	}
}

func TestKeyed_BoundedMemory(t *testing.T) {
	k := ratelimit.NewKeyed(ratelimit.Limit{Burst: 2, Every: time.Minute}, 100)
	for i := range 10_000 {
		k.Allow(fmt.Sprint("ip-", i), t0)
	}
	if n := k.Len(); n > 100 {
		t.Fatalf("held %d keys, limit 100", n)
	}
	// The most recent attacker key is still limited (it was not evicted).
	k.Allow("ip-9999", t0)
	if ok, _ := k.Allow("ip-9999", t0); ok {
		t.Fatal("most recent key lost its state")
	}
	if n := k.Sweep(t0.Add(time.Hour)); n != k.Len()+n || k.Len() != 0 {
		t.Fatalf("sweep after refill left %d keys", k.Len())
	}
}

func TestKeyed_EvictsRefilledFirst(t *testing.T) {
	k := ratelimit.NewKeyed(ratelimit.Limit{Burst: 1, Every: time.Minute}, 2)
	k.Allow("hot", t0) // empty bucket: must survive
	k.Allow("cold", t0)
	later := t0.Add(30 * time.Second)
	k.Allow("hot", later) // refused, touches hot
	k.Allow("new", later) // forces an eviction
	if ok, _ := k.Peek("hot", later); ok {
		t.Fatal("the limited key was evicted while over its limit")
	}
}

func TestZeroLimitAllowsAll(t *testing.T) {
	var k *ratelimit.Keyed
	if ok, _ := k.Allow("x", t0); !ok {
		t.Fatal("nil Keyed must allow")
	}
	k2 := ratelimit.NewKeyed(ratelimit.Limit{}, 0)
	for range 1000 {
		if ok, _ := k2.Allow("x", t0); !ok {
			t.Fatal("zero Limit must allow")
		}
	}
}

func BenchmarkKeyed_Allow(b *testing.B) {
	k := ratelimit.NewKeyed(ratelimit.Limit{Burst: 10, Every: time.Second}, 10_000)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("10.0.", i/256, ".", i%256)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k.Allow(keys[i%len(keys)], t0.Add(time.Duration(i)))
	}
}

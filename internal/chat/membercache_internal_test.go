package chat

import (
	"testing"
	"time"
)

// Pruning keeps an entry while either of its lists is fresh and drops it
// once both expired; a put after a forget that raced it is not stored.
func TestMemberCache_Prune(t *testing.T) {
	m := newMemberCache(10*time.Second, 100)
	t0 := time.Unix(1000, 0)
	m.putConversations("a", m.generation(), []string{"c1"}, t0)
	m.putConversations("b", m.generation(), []string{"c2"}, t0)
	m.putCoMembers("b", m.generation(), []string{"a"}, t0.Add(8*time.Second))

	m.prune(t0.Add(5 * time.Second))
	if got, ok := m.conversations("a", t0.Add(5*time.Second)); !ok || len(got) != 1 {
		t.Fatalf("fresh entry pruned: %v %v", got, ok)
	}
	m.prune(t0.Add(12 * time.Second))
	if _, ok := m.entries["a"]; ok {
		t.Fatal("entry with both lists expired kept")
	}
	if _, ok := m.coMembers("b", t0.Add(12*time.Second)); !ok {
		t.Fatal("entry with a fresh list pruned")
	}
	m.prune(t0.Add(20 * time.Second))
	if len(m.entries) != 0 {
		t.Fatalf("%d entries left after every list expired", len(m.entries))
	}

	gen := m.generation()
	m.forget()
	m.putConversations("a", gen, []string{"c1"}, t0)
	if _, ok := m.conversations("a", t0); ok {
		t.Fatal("a read that raced an invalidation was stored")
	}
}

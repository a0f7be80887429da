package chat

import (
	"sync"
	"time"
)

// memberCache keeps, per identity, what every WebSocket connect used to
// read from the store: the identity's conversations and its co-members
// (for the presence snapshot). A reconnect storm of one identity's
// connections, or of many identities on this node, then reads each once.
//
// Correctness rests on invalidation, not on the TTL: every membership
// change reaches every node over the bus (applyMembership), and each one
// drops the whole cache (a join changes the co-members of everybody in the
// conversation, which this cache does not index). So do a bus reconnect
// (changes may have been missed during the outage), a new account (it joins
// the default channel in the store without a membership change; accounts
// announce it as an identity change) and every other identity change. While
// the bus is down nothing is cached or served. The TTL only bounds what a
// lost bus message could leave stale.
//
// A read that started before an invalidation is not stored (generation
// check), so a racing change can never be overwritten by older data.
type memberCache struct {
	ttl time.Duration
	max int // entries; the map is cleared when full

	mu      sync.Mutex
	gen     uint64 // incremented by every invalidation
	entries map[string]memberEntry
}

type memberEntry struct {
	convs, co memberList
}

// memberList is one cached store read of an identity.
type memberList struct {
	ids []string // read-only once stored
	ok  bool     // stored (at alone cannot tell: a test clock may start at zero)
	at  time.Time
}

// The two lists of an entry, for get and put.
func convsOf(e *memberEntry) *memberList { return &e.convs }
func coOf(e *memberEntry) *memberList    { return &e.co }

func newMemberCache(ttl time.Duration, max int) *memberCache {
	return &memberCache{ttl: ttl, max: max, entries: make(map[string]memberEntry)}
}

// generation is taken before a store read and passed to the put that
// follows it.
func (m *memberCache) generation() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

// forget drops everything; reads in flight are not stored. The map is
// replaced, not cleared: a cleared map keeps the memory of its largest size.
func (m *memberCache) forget() {
	m.mu.Lock()
	m.gen++
	m.entries = make(map[string]memberEntry)
	m.mu.Unlock()
}

// prune drops the entries whose lists have both expired. An entry is only
// useful for a TTL after its read (a reconnect storm); without pruning, the
// cache would keep one for every identity that connected since the last
// invalidation (about 0.3 KiB each, measured per idle device). The map is
// rebuilt so that its memory goes with the entries.
func (m *memberCache) prune(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := make(map[string]memberEntry)
	for id, e := range m.entries {
		if m.fresh(&e.convs, now) || m.fresh(&e.co, now) {
			live[id] = e
		}
	}
	m.entries = live
}

func (m *memberCache) fresh(l *memberList, now time.Time) bool {
	return l.ok && now.Sub(l.at) < m.ttl
}

// conversations returns the cached conversation IDs of id (not to be
// modified).
func (m *memberCache) conversations(id string, now time.Time) ([]string, bool) {
	return m.get(id, convsOf, now)
}

// coMembers returns the cached co-members of id (not to be modified).
func (m *memberCache) coMembers(id string, now time.Time) ([]string, bool) {
	return m.get(id, coOf, now)
}

// putConversations stores convs, read from the store after generation
// returned gen, unless an invalidation came in between.
func (m *memberCache) putConversations(id string, gen uint64, convs []string, now time.Time) {
	m.put(id, gen, convsOf, convs, now)
}

// putCoMembers is putConversations for co-members.
func (m *memberCache) putCoMembers(id string, gen uint64, co []string, now time.Time) {
	m.put(id, gen, coOf, co, now)
}

func (m *memberCache) get(id string, list func(*memberEntry) *memberList, now time.Time) ([]string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[id]
	if !ok {
		return nil, false
	}
	l := list(&e)
	if !m.fresh(l, now) {
		return nil, false
	}
	return l.ids, true
}

func (m *memberCache) put(id string, gen uint64, list func(*memberEntry) *memberList, ids []string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen != gen {
		return
	}
	e, ok := m.entries[id]
	if !ok && len(m.entries) >= m.max {
		m.entries = make(map[string]memberEntry)
	}
	*list(&e) = memberList{ids: ids, ok: true, at: now}
	m.entries[id] = e
}

package chat

import (
	"context"
	"time"

	"github.com/unhidra/unhidra/internal/hub"
)

// Membership changes travel on the bus, so a node cut off from it misses
// those made on other nodes. Two repairs, both from the store:
//
//   - in each store sync (delivery.syncFromStore: every outageSync while
//     the bus is down, and once when it is back), each conversation a local
//     connection follows has its members read, and connections of
//     identities no longer members are removed, before the sync delivers
//     what other nodes stored: a removed member must not go on receiving
//     the conversation for the length of the outage;
//   - when the bus is back, or dropped messages for a subscriber that fell
//     behind, each identity connected here has its conversations read and
//     its connections brought in line, which also finds the conversations
//     it was added to meanwhile.
//
// A change that arrives over the bus while an identity is being compared
// wins: the comparison is read again under subsMu (as Connect does) or,
// for the outage check, skipped until the next tick.

// reconcileTimeout bounds one pass over the store.
const reconcileTimeout = 30 * time.Second

// pruneRemovedMembers removes local connections from those of convs their
// identity is no longer a member of. It returns the conversations it is
// done with: those whose members it read, and those no connection here
// follows.
func (s *Service) pruneRemovedMembers(ctx context.Context, convs []string) (checked map[string]bool) {
	type follower struct {
		c      hub.Client
		before uint64 // s.changes of its identity when the members were listed
	}
	want := make(map[string]bool, len(convs))
	for _, conv := range convs {
		want[conv] = true
	}
	s.subsMu.Lock()
	byConv := make(map[string][]follower)
	for _, st := range s.conns {
		for conv := range st.convs {
			if want[conv] {
				byConv[conv] = append(byConv[conv], follower{st.client, s.changes[st.client.Identity()]})
			}
		}
	}
	s.subsMu.Unlock()
	checked = make(map[string]bool, len(convs))
	for _, conv := range convs {
		if _, followed := byConv[conv]; !followed {
			checked[conv] = true
		}
	}
	if len(byConv) == 0 {
		return checked
	}
	followed := make([]string, 0, len(byConv))
	for conv := range byConv {
		followed = append(followed, conv)
	}
	membersOf, err := s.st.MemberIDs(ctx, followed)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("chat: check members after a bus outage", "conversations", len(followed), "err", err)
		}
		return checked
	}
	for conv, followers := range byConv {
		checked[conv] = true
		isMember := make(map[string]bool, len(membersOf[conv]))
		for _, m := range membersOf[conv] {
			isMember[m] = true
		}
		s.subsMu.Lock()
		for _, f := range followers {
			id := f.c.Identity()
			st := s.conns[f.c.ConnID()]
			if isMember[id] || st == nil || s.changes[id] != f.before {
				continue
			}
			if _, ok := st.convs[conv]; !ok {
				continue
			}
			s.changes[id]++
			s.members.forget()
			s.applyToConn(f.c, st, membershipChange{Member: id, Conv: conv})
		}
		s.subsMu.Unlock()
	}
	return checked
}

// reconcileMemberships compares every identity connected here with its
// conversations in the store and adds or removes its connections.
func (s *Service) reconcileMemberships(ctx context.Context) {
	s.subsMu.Lock()
	ids := make(map[string]struct{})
	for _, st := range s.conns {
		ids[st.client.Identity()] = struct{}{}
	}
	s.subsMu.Unlock()
	for id := range ids {
		if ctx.Err() != nil {
			return
		}
		s.reconcileIdentity(ctx, id)
	}
}

func (s *Service) reconcileIdentity(ctx context.Context, id string) {
	s.subsMu.Lock()
	before := s.changes[id]
	s.subsMu.Unlock()
	views, err := s.st.Conversations(ctx, id)
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if s.changes[id] != before {
		views, err = s.st.Conversations(ctx, id)
	}
	if err != nil {
		s.log.Warn("chat: re-read memberships after a bus outage", "identity", id, "err", err)
		return
	}
	want := make(map[string]int64, len(views))
	for _, v := range views {
		want[v.ID] = v.LastSeq
	}
	changed := false
	for _, c := range s.hub.Connections(id) {
		st := s.conns[c.ConnID()]
		if st == nil {
			continue
		}
		for conv := range st.convs {
			if _, ok := want[conv]; !ok {
				s.applyToConn(c, st, membershipChange{Member: id, Conv: conv})
				changed = true
			}
		}
		for conv, last := range want {
			if _, ok := st.convs[conv]; !ok {
				s.applyToConn(c, st, membershipChange{Member: id, Conv: conv, Added: true, LastSeq: last})
				changed = true
			}
		}
	}
	if changed {
		s.changes[id]++
		s.members.forget()
	}
}

// repairGap spaces the store re-reads the bus asks for (store sync and
// reconcile): NATS can report slow-consumer drops many times a second under
// an overload, and a re-read of every conversation and identity each time
// would add to it. A request made meanwhile waits, and is served once.
const repairGap = time.Second

// pause waits d, and reports false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

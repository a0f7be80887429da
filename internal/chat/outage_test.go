package chat_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/protocol"
)

// outageBus is a local bus that says it is disconnected while down, as the
// NATS bus does in an outage: the node then follows other nodes' messages
// and membership changes through the store.
type outageBus struct {
	local.Bus
	down atomic.Bool
}

func (b *outageBus) Connected() bool { return !b.down.Load() }

// membersHook runs then once, right after the first read of conv's members
// once armed: it is what another node commits between that read and
// whatever the reader does next.
type membersHook struct {
	*sqldb.DB
	mu   sync.Mutex
	conv string
	then func()
}

func (m *membersHook) arm(conv string, then func()) {
	m.mu.Lock()
	m.conv, m.then = conv, then
	m.mu.Unlock()
}

func (m *membersHook) MemberIDs(ctx context.Context, convs []string) (map[string][]string, error) {
	ms, err := m.DB.MemberIDs(ctx, convs)
	m.mu.Lock()
	then := m.then
	if !slices.Contains(convs, m.conv) {
		then = nil
	}
	if then != nil {
		m.then = nil
	}
	m.mu.Unlock()
	if then != nil {
		then()
	}
	return ms, err
}

// TestOutage_MessageAfterRemovalNeverReachesRemovedMember: while this
// node's bus is down, another node removes xena from a channel and at once
// posts to it, both committed just after this node read the channel's
// members (still with xena). The store sync delivers the message to yuri,
// who stays, and never to xena, who is told she was removed. The sync used
// to read the channel's last seq after its members, and so delivered
// messages stored after a removal it had not seen.
func TestOutage_MessageAfterRemovalNeverReachesRemovedMember(t *testing.T) {
	ob := &outageBus{}
	h, hook := newHarnessWrapped(t, ob, func(db *sqldb.DB) *membersHook { return &membersHook{DB: db} })
	ctx := context.Background()
	ann, xena, yuri := h.user("ann", unhidra.RoleMember), h.user("xena", unhidra.RoleMember), h.user("yuri", unhidra.RoleMember)
	ch, err := h.svc.CreateChannel(ctx, ann, "ops", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []chat.Actor{xena, yuri} {
		if _, err := h.svc.Invite(ctx, ann, ch.ID, who.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Another node on the same store, on a bus this node does not hear.
	other := chat.New(h.db, hub.NewRouter(hub.New(), &local.Bus{}, nil), chat.Config{}, nil)
	defer other.Close()

	x, y := h.dial(t, xena), h.dial(t, yuri)
	hook.arm(ch.ID, func() {
		if err := other.Kick(ctx, ann, ch.ID, xena.ID); err != nil {
			t.Error(err)
		}
		if _, _, err := other.Send(ctx, ann, chat.SendInput{Channel: ch.ID, Body: "after the removal"}, nil); err != nil {
			t.Error(err)
		}
	})
	ob.down.Store(true)

	// yuri gets it through the store: the sync did deliver it.
	y.expect("message", func(f frame) bool { return f.str("body") == "after the removal" })
	// A later message where xena is still a member marks the end of what
	// she could have been sent before it.
	if _, _, err := other.Send(ctx, ann, chat.SendInput{Channel: general, Body: "marker"}, nil); err != nil {
		t.Fatal(err)
	}
	removed := false
	for {
		f := x.expect("", nil)
		if f.str("type") == protocol.TypeConversationRemoved && f.str("channel") == ch.ID {
			removed = true
		}
		if f.str("type") == "message" && f.str("body") == "after the removal" {
			t.Fatalf("xena got a message stored after her removal: %v", f)
		}
		if f.str("type") == "message" && f.str("body") == "marker" {
			break
		}
	}
	if !removed {
		t.Fatal("xena was not told she was removed from the channel")
	}
}

// reconnectingBus is an outageBus that also tells its listeners when it is
// back, as the NATS bus does.
type reconnectingBus struct {
	outageBus
	mu    sync.Mutex
	hooks []func()
}

func (b *reconnectingBus) OnMissed(f func()) {
	b.mu.Lock()
	b.hooks = append(b.hooks, f)
	b.mu.Unlock()
}

func (b *reconnectingBus) back() {
	b.down.Store(false)
	b.mu.Lock()
	hooks := b.hooks
	b.mu.Unlock()
	for _, f := range hooks {
		f()
	}
}

// failingConvReads fails every read of last seqs that includes one
// conversation while failing is set, and counts the failures.
type failingConvReads struct {
	*sqldb.DB
	conv    string
	failing atomic.Bool
	failed  chan struct{}
}

func (f *failingConvReads) LastSeqs(ctx context.Context, ids []string) (map[string]int64, error) {
	if slices.Contains(ids, f.conv) && f.failing.Load() {
		select {
		case f.failed <- struct{}{}:
		default:
		}
		return nil, errors.New("database unreachable")
	}
	return f.DB.LastSeqs(ctx, ids)
}

// TestOutage_SyncAfterReconnectIsRetriedUntilDone: a message stored by
// another node during a bus outage reaches a listener here even when the
// store sync the reconnect starts cannot read its conversation: the sync
// is tried again until it has covered every conversation.
func TestOutage_SyncAfterReconnectIsRetriedUntilDone(t *testing.T) {
	rb := &reconnectingBus{}
	h, st := newHarnessWrapped(t, rb, func(db *sqldb.DB) *failingConvReads {
		return &failingConvReads{DB: db, failed: make(chan struct{}, 1)}
	})
	ctx := context.Background()
	ann, yuri := h.user("ann", unhidra.RoleMember), h.user("yuri", unhidra.RoleMember)
	ch, err := h.svc.CreateChannel(ctx, ann, "ops", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Invite(ctx, ann, ch.ID, yuri.ID); err != nil {
		t.Fatal(err)
	}
	other := chat.New(h.db, hub.NewRouter(hub.New(), &local.Bus{}, nil), chat.Config{}, nil)
	defer other.Close()
	y := h.dial(t, yuri)

	// This node does not hear the other's bus: the message is missed, as
	// in an outage (without the outage's own passes, so that the one the
	// reconnect starts is the first to read the channel).
	st.conv = ch.ID
	st.failing.Store(true)
	if _, _, err := other.Send(ctx, ann, chat.SendInput{Channel: ch.ID, Body: "during the outage"}, nil); err != nil {
		t.Fatal(err)
	}
	syncs := gaugeValue(t, h.svc, "unhidra_bus_store_syncs_total")
	rb.back()
	<-st.failed // the pass the reconnect started could not read the channel
	waitMetric(t, h.svc, "unhidra_bus_store_sync_unfinished", func(v float64) bool { return v >= 1 })
	st.failing.Store(false)
	y.expect("message", func(f frame) bool { return f.str("body") == "during the outage" })
	waitMetric(t, h.svc, "unhidra_bus_store_sync_unfinished", func(v float64) bool { return v == 0 })
	if v := gaugeValue(t, h.svc, "unhidra_bus_store_syncs_total"); v < syncs+2 {
		t.Fatalf("store_syncs_total went from %v to %v; want the failed pass and its retry", syncs, v)
	}
}

// waitMetric waits until the service's metric name satisfies ok.
func waitMetric(t *testing.T, s *chat.Service, name string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for v := gaugeValue(t, s, name); !ok(v); v = gaugeValue(t, s, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 15s", name, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countingSeqReads counts the reads of last seqs: one per store sync pass
// over a handful of conversations.
type countingSeqReads struct {
	*sqldb.DB
	n atomic.Int64
}

func (c *countingSeqReads) LastSeqs(ctx context.Context, ids []string) (map[string]int64, error) {
	c.n.Add(1)
	return c.DB.LastSeqs(ctx, ids)
}

// TestOutage_MissedSignalsAreSpaced: the bus may say it missed messages
// many times a second (NATS reports each slow-consumer episode). Each time
// asks for a store sync, but passes come at most once per repair gap (one
// second), and a request made during the gap is served after it, once.
// The bound is on passes per elapsed time, measured by the test itself.
func TestOutage_MissedSignalsAreSpaced(t *testing.T) {
	rb := &reconnectingBus{}
	h, st := newHarnessWrapped(t, rb, func(db *sqldb.DB) *countingSeqReads { return &countingSeqReads{DB: db} })
	ann := h.user("ann", unhidra.RoleMember)
	h.dial(t, ann) // follows #general: every pass reads its last seq
	before := st.n.Load()

	start := time.Now()
	for range 50 {
		rb.back()
		time.Sleep(10 * time.Millisecond)
	}
	passes, elapsed := st.n.Load()-before, time.Since(start)
	if limit := 1 + int64(elapsed/time.Second); passes < 1 || passes > limit {
		t.Fatalf("%d store sync passes for 50 signals in %v; want 1 to %d (one per second)", passes, elapsed, limit)
	}
	// The signals that came during the gap are served once after it.
	deadline := time.Now().Add(15 * time.Second)
	for st.n.Load()-before <= passes {
		if time.Now().After(deadline) {
			t.Fatalf("no store sync after the gap: the signals during it were lost (%d passes)", st.n.Load()-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // room for a pass too many
	total, elapsed := st.n.Load()-before, time.Since(start)
	if limit := 1 + int64(elapsed/time.Second); total > limit {
		t.Fatalf("%d store sync passes in %v; want at most %d (one per second)", total, elapsed, limit)
	}
}

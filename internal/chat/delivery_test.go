package chat_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
)

// blockingStore is a store whose commits block, ignoring their context,
// while they touch a blocked conversation (all of them when blockAll) and
// until released: a database that does not answer.
type blockingStore struct {
	*sqldb.DB
	mu       sync.Mutex
	blocked  map[string]bool
	blockAll bool
	release  chan struct{}
	entered  chan struct{} // one value per commit that started blocking
}

func newBlockingStore(db *sqldb.DB) *blockingStore {
	return &blockingStore{DB: db, blocked: map[string]bool{}, release: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (b *blockingStore) AppendMessages(ctx context.Context, reqs []store.AppendRequest) ([]store.AppendResult, error) {
	b.mu.Lock()
	block := b.blockAll
	for _, r := range reqs {
		block = block || b.blocked[r.ConversationID]
	}
	release := b.release
	b.mu.Unlock()
	if block {
		b.entered <- struct{}{}
		<-release // deaf to ctx, like a frozen server
	}
	return b.DB.AppendMessages(ctx, reqs)
}

// TestSend_FrozenStoreAnswersUnavailableWithRetryAfter: with a store that
// does not answer, a send is answered "unavailable" with retry_after within
// the send timeout, and never acknowledged, even once the store comes back
// and commits it. A retry with the same id then gets the original ack.
func TestSend_FrozenStoreAnswersUnavailableWithRetryAfter(t *testing.T) {
	var bs *blockingStore
	const timeout = 500 * time.Millisecond
	h := newHarnessStore(t, chat.Config{SendTimeout: timeout}, gateway.Config{}, func(db *sqldb.DB) chat.Store {
		bs = newBlockingStore(db)
		bs.blockAll = true
		return bs
	})
	ann := h.user("ann", unhidra.RoleMember)
	c := h.dial(t, ann)
	start := time.Now()
	c.send(map[string]any{"type": "send", "id": "frozen", "channel": general, "body": "hello?"})
	r := c.reply("frozen")
	took := time.Since(start)
	wantError(t, r, "unavailable")
	if r.num("retry_after") < 1 {
		t.Fatalf("unavailable without retry_after: %v", r)
	}
	if took > 5*time.Second {
		t.Fatalf("answered after %v; the bound is 5 s", took)
	}
	t.Logf("unavailable after %v (send timeout %v)", took, timeout)
	if v := gaugeValue(t, h.svc, "unhidra_chat_store_up"); v != 0 {
		t.Fatalf("store_up = %v during the outage", v)
	}

	// The store comes back; the commit it held ran past its deadline, so
	// that send stays unanswered by an ack. The retry with the same id is
	// stored and acknowledged once.
	bs.mu.Lock()
	bs.blockAll = false
	close(bs.release)
	bs.mu.Unlock()
	c.send(map[string]any{"type": "send", "id": "frozen", "channel": general, "body": "hello?"})
	ack := c.reply("frozen")
	if ack.str("type") != "ack" {
		t.Fatalf("retry: %v", ack)
	}
	m := c.expect("message", nil)
	if m.str("message_id") != ack.str("message_id") || m.num("seq") != ack.num("seq") {
		t.Fatalf("retry acked %v, delivered %v", ack, m)
	}
	select {
	case f := <-c.frames:
		if f.str("type") == "ack" || f.str("type") == "message" {
			t.Fatalf("after the retry: %v", f)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if v := gaugeValue(t, h.svc, "unhidra_chat_store_up"); v != 1 {
		t.Fatalf("store_up = %v after the outage", v)
	}
}

func gaugeValue(t *testing.T, s *chat.Service, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSend_BlockedConversationDoesNotStallOthers: while the store hangs on
// one conversation's commit, sends to conversations committed by other
// writers complete, and a resume (which used to wait for every commit in
// flight under a global lock) is answered.
func TestSend_BlockedConversationDoesNotStallOthers(t *testing.T) {
	var bs *blockingStore
	h := newHarnessStore(t, chat.Config{Writers: 4, SendTimeout: time.Minute}, gateway.Config{}, func(db *sqldb.DB) chat.Store {
		bs = newBlockingStore(db)
		return bs
	})
	ann := h.user("ann", unhidra.RoleMember)
	ctx := context.Background()
	var blocked string
	var others []string
	for i := 0; len(others) < 4; i++ {
		ch, err := h.svc.CreateChannel(ctx, ann, "c"+string(rune('a'+i)), false)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case blocked == "":
			blocked = ch.ID
		case chat.WriterOf(h.svc, ch.ID) != chat.WriterOf(h.svc, blocked):
			others = append(others, ch.ID)
		}
	}
	c := h.dial(t, ann)
	// Latency before: one send to each.
	var before time.Duration
	for _, ch := range others {
		start := time.Now()
		c.sendMsg(nextID(), ch, "before")
		before = max(before, time.Since(start))
	}

	bs.mu.Lock()
	bs.blocked[blocked] = true
	bs.mu.Unlock()
	// From another connection: one connection's frames are handled in
	// order, so its own next frame would wait for this one.
	stuck := h.dial(t, ann)
	stuck.send(map[string]any{"type": "send", "id": "stuck", "channel": blocked, "body": "into the void"})
	<-bs.entered // the commit hangs now

	// A resume of every conversation is answered meanwhile.
	positions := map[string]int64{blocked: 0}
	for _, ch := range others {
		positions[ch] = 0
	}
	c.send(map[string]any{"type": "resume", "id": "res", "positions": positions})
	if r := c.reply("res"); r.str("type") != "ack" {
		t.Fatalf("resume: %v", r)
	}
	var during time.Duration
	for range 3 {
		for _, ch := range others {
			start := time.Now()
			c.sendMsg(nextID(), ch, "during")
			during = max(during, time.Since(start))
		}
	}
	// Still blocked: everything above completed while it was.
	for len(stuck.frames) > 0 {
		if f := <-stuck.frames; f.str("id") == "stuck" {
			t.Fatalf("the blocked send was answered: %v", f)
		}
	}
	t.Logf("slowest send to another conversation: %v before, %v while one conversation's commit hung", before, during)
	bs.mu.Lock()
	close(bs.release)
	bs.mu.Unlock()
	if r := stuck.reply("stuck"); r.str("type") != "ack" {
		t.Fatalf("the blocked send after release: %v", r)
	}
}

// TestSend_DuplicateRepublishes: a node committed a message and died before
// publishing it; the sender retries the same id (on any node) and gets the
// original ack, and the retry publishes the stored message, so every
// listener still receives it live.
func TestSend_DuplicateRepublishes(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	listener := h.dial(t, bob)
	sender := h.dial(t, ann)
	// The commit of the node that died: stored, never published.
	res, err := h.db.AppendMessages(context.Background(), []store.AppendRequest{{ConversationID: general, SenderID: ann.ID, ClientID: "lost", Body: "committed, then the node died"}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	ack := sender.sendMsg("lost", general, "committed, then the node died")
	if ack.num("seq") != res[0].Message.Seq || ack.str("message_id") != res[0].Message.ID {
		t.Fatalf("retry ack %v, stored %+v", ack, res[0].Message)
	}
	m := listener.expect("message", nil)
	if m.str("message_id") != res[0].Message.ID || m.num("seq") != res[0].Message.Seq {
		t.Fatalf("listener got %v", m)
	}
	// A second retry publishes again; the node's sequencer drops it.
	sender.sendMsg("lost", general, "committed, then the node died")
	sender.sendMsg(nextID(), general, "next")
	if n := listener.expect("message", nil); n.num("seq") != m.num("seq")+1 {
		t.Fatalf("after the duplicate the listener got %v, want seq %d", n, m.num("seq")+1)
	}
}

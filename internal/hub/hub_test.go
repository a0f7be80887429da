package hub_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// fakeClient stands in for a connection: it records what it is sent and
// can pretend its queue is full.
type fakeClient struct {
	id        uint64
	identity  string
	full      bool
	countOnly bool // benchmarks: count, do not keep
	count     atomic.Int64
	mu        sync.Mutex
	got       []*ws.PreparedMessage
	closed    atomic.Int32
}

func (f *fakeClient) ConnID() uint64   { return f.id }
func (f *fakeClient) Identity() string { return f.identity }
func (f *fakeClient) Send(m *ws.PreparedMessage) error {
	if f.full {
		return ws.ErrQueueFull
	}
	if f.countOnly {
		f.count.Add(1)
		return nil
	}
	f.mu.Lock()
	f.got = append(f.got, m)
	f.mu.Unlock()
	return nil
}
func (f *fakeClient) Close(code int) { f.closed.Store(int32(code)) }
func (f *fakeClient) received() int  { f.mu.Lock(); defer f.mu.Unlock(); return len(f.got) }

var nextID atomic.Uint64

func newClient(identity string) *fakeClient {
	return &fakeClient{id: nextID.Add(1), identity: identity}
}

func TestHub_PresenceEdges(t *testing.T) {
	h := hub.New()
	a1, a2 := newClient("alice"), newClient("alice")
	if !h.Add(a1) {
		t.Fatal("first connection not reported first")
	}
	if h.Add(a2) {
		t.Fatal("second connection reported first")
	}
	if h.Len() != 2 || len(h.Connections("alice")) != 2 || !h.Online("alice") {
		t.Fatalf("len=%d conns=%d", h.Len(), len(h.Connections("alice")))
	}
	if h.Remove(a1) {
		t.Fatal("offline while a connection remains")
	}
	if !h.Remove(a2) || h.Online("alice") || h.Len() != 0 {
		t.Fatal("last removal not reported")
	}
	if h.Remove(a2) {
		t.Fatal("double remove reported last again")
	}
}

func TestHub_PublishEncodesOnceAndReachesSubscribers(t *testing.T) {
	h := hub.New()
	var subs []*fakeClient
	for i := range 10 {
		c := newClient(fmt.Sprint("u", i))
		h.Add(c)
		if first := h.Subscribe("ch:1", c); first != (i == 0) {
			t.Fatalf("subscriber %d: first=%v", i, first)
		}
		subs = append(subs, c)
	}
	other := newClient("x")
	h.Subscribe("ch:2", other)
	m := ws.NewPreparedMessage(true, []byte(`{"type":"message"}`))
	if n := h.Publish("ch:1", m); n != 10 {
		t.Fatalf("delivered to %d, want 10", n)
	}
	for _, c := range subs {
		if c.received() != 1 || c.got[0] != m {
			t.Fatal("subscriber did not get the very same prepared message")
		}
	}
	if other.received() != 0 {
		t.Fatal("message leaked to another topic")
	}
	for i, c := range subs {
		if last := h.Unsubscribe("ch:1", c); last != (i == len(subs)-1) {
			t.Fatalf("unsubscribe %d: last=%v", i, last)
		}
	}
	if h.Publish("ch:1", m) != 0 || h.Subscribers("ch:1") != 0 {
		t.Fatal("unsubscribed clients still reached")
	}
}

func TestHub_SlowConsumerIsClosedOthersUnaffected(t *testing.T) {
	h := hub.New()
	var overflowed atomic.Int32
	h.OnOverflow = func(hub.Client) { overflowed.Add(1) }
	slow := newClient("slow")
	slow.full = true
	fast := newClient("fast")
	h.Subscribe("t", slow)
	h.Subscribe("t", fast)
	n := h.Publish("t", ws.NewPreparedMessage(true, []byte(`{}`)))
	if n != 1 || fast.received() != 1 {
		t.Fatalf("fast client: delivered=%d received=%d", n, fast.received())
	}
	if slow.closed.Load() != protocol.CloseSlowConsumer || overflowed.Load() != 1 || h.Overflows() != 1 {
		t.Fatalf("slow client closed with %d, overflow callbacks %d", slow.closed.Load(), overflowed.Load())
	}
}

func TestHub_LargeFanoutUsesAllSubscribers(t *testing.T) {
	h := hub.New()
	const n = 5000 // above the parallel threshold
	clients := make([]*fakeClient, n)
	for i := range clients {
		clients[i] = newClient(fmt.Sprint("u", i))
		h.Subscribe("big", clients[i])
	}
	if got := h.Publish("big", ws.NewPreparedMessage(true, []byte(`{}`))); got != n {
		t.Fatalf("delivered %d of %d", got, n)
	}
	for i, c := range clients {
		if c.received() != 1 {
			t.Fatalf("client %d received %d", i, c.received())
		}
	}
}

func TestHub_SendToIdentity(t *testing.T) {
	h := hub.New()
	a, b, c := newClient("alice"), newClient("alice"), newClient("bob")
	h.Add(a)
	h.Add(b)
	h.Add(c)
	if n := h.SendTo("alice", ws.NewPreparedMessage(true, []byte(`{}`))); n != 2 || c.received() != 0 {
		t.Fatalf("SendTo alice reached %d (bob got %d)", n, c.received())
	}
}

func TestHub_ConcurrentUse(t *testing.T) {
	h := hub.New()
	var wg sync.WaitGroup
	m := ws.NewPreparedMessage(true, []byte(`{}`))
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				c := newClient(fmt.Sprint("w", w, "-", i%7))
				h.Add(c)
				h.Subscribe("t", c)
				h.Publish("t", m)
				h.Unsubscribe("t", c)
				h.Remove(c)
			}
		}()
	}
	wg.Wait()
	if h.Len() != 0 || h.Subscribers("t") != 0 {
		t.Fatalf("leftovers: %d conns, %d subscribers", h.Len(), h.Subscribers("t"))
	}
}

func BenchmarkHub_Publish1000(b *testing.B) {
	h := hub.New()
	for i := range 1000 {
		c := newClient(fmt.Sprint("u", i))
		c.countOnly = true
		h.Subscribe("t", c)
	}
	m := ws.NewPreparedMessage(true, []byte(`{"type":"message","body":"hello"}`))
	b.ResetTimer()
	for b.Loop() {
		h.Publish("t", m)
	}
}

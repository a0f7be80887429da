package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/bus/local"
	busnats "github.com/unhidra/unhidra/internal/bus/nats"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/testenv"
)

// twoNodes returns the routers of two nodes sharing the test NATS server.
func twoNodes(t *testing.T) (a, b *hub.Router, flush func()) {
	url, prefix := testenv.NATSURL(t), testenv.UniqueName("hub")
	var buses [2]*busnats.Bus
	for i := range buses {
		nb, err := busnats.Open(url, prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nb.Close() })
		buses[i] = nb
	}
	flush = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, nb := range buses {
			nb.Flush(ctx)
		}
	}
	return hub.NewRouter(hub.New(), buses[0], nil), hub.NewRouter(hub.New(), buses[1], nil), flush
}

func waitReceived(t *testing.T, c *fakeClient, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.received() < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d, want %d", c.received(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRouter_AcrossNodes(t *testing.T) {
	nodeA, nodeB, flush := twoNodes(t)
	ctx := context.Background()
	onA, onB := newClient("alice"), newClient("bob")
	nodeA.Add(onA)
	nodeB.Add(onB)
	nodeA.Subscribe("conv:1", onA)
	nodeB.Subscribe("conv:1", onB)
	flush()

	// Published on A, delivered on both nodes, once each.
	if err := nodeA.Publish(ctx, "conv:1", []byte(`{"type":"message","seq":1}`)); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, onA, 1)
	waitReceived(t, onB, 1)

	// Directed at an identity: reaches its connection wherever it is.
	if err := nodeA.SendTo(ctx, "bob", []byte(`{"type":"presence"}`)); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, onB, 2)

	// Once bob's last subscriber on B leaves, B stops receiving the topic.
	nodeB.Unsubscribe("conv:1", onB)
	nodeB.Remove(onB)
	flush()
	nodeA.Publish(ctx, "conv:1", []byte(`{"type":"message","seq":2}`))
	nodeA.SendTo(ctx, "bob", []byte(`{}`))
	waitReceived(t, onA, 2)
	flush()
	time.Sleep(50 * time.Millisecond)
	if onB.received() != 2 {
		t.Fatalf("bob received %d after leaving, want 2", onB.received())
	}
}

func TestRouter_ResubscribeIsNotLost(t *testing.T) {
	// Quick leave and rejoin of the only subscriber must leave the node
	// subscribed on the bus.
	r := hub.NewRouter(hub.New(), &local.Bus{}, nil)
	c := newClient("u")
	for range 100 {
		r.Subscribe("t", c)
		r.Unsubscribe("t", c)
	}
	r.Subscribe("t", c)
	r.Publish(context.Background(), "t", []byte(`{}`))
	if c.received() != 1 {
		t.Fatalf("received %d", c.received())
	}
}

var _ bus.Bus = (*local.Bus)(nil)

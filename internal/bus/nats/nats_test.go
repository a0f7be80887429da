package nats_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/bus/bustest"
	busnats "github.com/unhidra/unhidra/internal/bus/nats"
	"github.com/unhidra/unhidra/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Open returns two connections (two "nodes") to the test NATS server under
// a prefix unique to the test.
func Open(t *testing.T) (bus.Bus, bus.Bus) {
	url := testenv.NATSURL(t)
	prefix := testenv.UniqueName("test")
	var out [2]bus.Bus
	for i := range out {
		b, err := busnats.Open(url, prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		out[i] = b
	}
	return out[0], out[1]
}

func flush(b bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.(*busnats.Bus).Flush(ctx)
}

func TestBus(t *testing.T) { bustest.Run(t, Open, flush) }

func TestOpen_Errors(t *testing.T) {
	if _, err := busnats.Open(testenv.NATSURL(t), "bad prefix", nil); err == nil {
		t.Fatal("accepted a prefix with a space")
	}
}

// TestBus_StartsWithoutNATSAndJoinsLater: a node whose NATS is unreachable
// starts, serves its own subscribers, and joins (telling its owner to
// re-sync) when the server appears; after a server restart it reconnects
// and says so again.
func TestBus_StartsWithoutNATSAndJoinsLater(t *testing.T) {
	srv := testenv.StartNATS(t)
	srv.Stop()
	a, err := busnats.Open(srv.URL, "t", nil)
	if err != nil {
		t.Fatalf("a node must start while NATS is unreachable: %v", err)
	}
	defer a.Close()
	if a.Connected() {
		t.Fatal("connected to a stopped server")
	}
	back := make(chan struct{}, 4)
	a.OnMissed(func() { back <- struct{}{} })
	got := make(chan string, 16)
	sub, err := a.Subscribe("room.1", func(d []byte) { got <- string(d) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// This node's own subscribers are served without NATS.
	if err := a.Publish(context.Background(), "room.1", []byte("alone")); err != nil {
		t.Logf("publish while down (buffered or refused): %v", err)
	}
	if s := <-got; s != "alone" {
		t.Fatalf("got %q", s)
	}

	srv.Start()
	select {
	case <-back:
	case <-time.After(10 * time.Second):
		t.Fatal("never joined NATS after it appeared")
	}
	// Another node now reaches it, and its own publish is not echoed
	// back twice.
	b, err := busnats.Open(srv.URL, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	flush(a)
	if err := b.Publish(context.Background(), "room.1", []byte("from b")); err != nil {
		t.Fatal(err)
	}
	flush(b)
	if s := <-got; s != "from b" {
		t.Fatalf("got %q", s)
	}
	a.Publish(context.Background(), "room.1", []byte("own"))
	flush(a)
	if s := <-got; s != "own" {
		t.Fatalf("got %q", s)
	}
	select {
	case s := <-got:
		t.Fatalf("delivered twice (echo): %q", s)
	case <-time.After(200 * time.Millisecond):
	}

	srv.Stop()
	srv.Start()
	select {
	case <-back:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect after a server restart")
	}
	mfs := map[string]float64{}
	for _, c := range a.Collectors() {
		ch := make(chan prometheus.Metric, 8)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			var pb dto.Metric
			m.Write(&pb)
			name := m.Desc().String()
			switch {
			case pb.Gauge != nil:
				mfs[name] = pb.Gauge.GetValue()
			case pb.Counter != nil:
				mfs[name] += pb.Counter.GetValue()
			}
		}
	}
	var connected, reconnects float64
	for k, v := range mfs {
		switch {
		case strings.Contains(k, "unhidra_bus_connected"):
			connected = v
		case strings.Contains(k, "unhidra_bus_reconnects_total"):
			reconnects = v
		}
	}
	if connected != 1 || reconnects < 1 {
		t.Fatalf("metrics: connected %v, reconnects %v", connected, reconnects)
	}
}

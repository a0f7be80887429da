package nats_test

import (
	"context"
	"testing"
	"time"

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
	if _, err := busnats.Open("nats://127.0.0.1:1", "x", nil); err == nil {
		t.Fatal("connected to nothing")
	}
	if _, err := busnats.Open(testenv.NATSURL(t), "bad prefix", nil); err == nil {
		t.Fatal("accepted a prefix with a space")
	}
}

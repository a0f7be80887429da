package nats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/testenv"
)

// A subscription that falls behind loses messages to NATS (a slow
// consumer); the bus tells its OnMissed callbacks, as after an outage, so
// that what was dropped is re-read from the store.
func TestSlowConsumer_TellsOnMissed(t *testing.T) {
	url := testenv.NATSURL(t)
	prefix := testenv.UniqueName("slow")
	pub, err := Open(url, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := Open(url, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.pendingMsgs = 4
	missed := make(chan struct{}, 1)
	sub.OnMissed(func() {
		select {
		case missed <- struct{}{}:
		default:
		}
	})
	release := make(chan struct{})
	s, err := sub.Subscribe("room.1", func([]byte) { <-release }) // stuck until released
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	defer close(release)
	if err := sub.nc.Flush(); err != nil { // the subscription is on the server
		t.Fatal(err)
	}
	for i := range 100 {
		if err := pub.Publish(context.Background(), "room.1", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-missed:
	case <-time.After(15 * time.Second): // a hang, not a measurement
		t.Fatal("100 messages to a stuck subscription with room for 4: OnMissed was not called")
	}
}

// Package bustest is the behaviour suite every bus implementation passes.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/bus"
)

// Run runs the suite. open returns two buses that reach each other (for
// bus/local, the same bus twice); flush waits until published messages
// have been delivered.
func Run(t *testing.T, open func(t *testing.T) (a, b bus.Bus), flush func(bus.Bus)) {
	t.Run("PublishReachesSubscribersInOrder", func(t *testing.T) {
		a, b := open(t)
		var mu sync.Mutex
		var got []string
		done := make(chan struct{})
		sub, err := b.Subscribe("room.1", func(data []byte) {
			mu.Lock()
			got = append(got, string(data))
			if len(got) == 100 {
				close(done)
			}
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		flush(b)
		for i := range 100 {
			if err := a.Publish(context.Background(), "room.1", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of 100", len(got))
		}
		for i, s := range got {
			if s != fmt.Sprint(i) {
				t.Fatalf("message %d is %q: order lost", i, s)
			}
		}
	})
	t.Run("SubjectsAreSeparate", func(t *testing.T) {
		a, b := open(t)
		other := make(chan []byte, 1)
		sub, _ := b.Subscribe("room.2", func(data []byte) { other <- data })
		defer sub.Unsubscribe()
		mine := make(chan []byte, 1)
		sub2, _ := b.Subscribe("room.3", func(data []byte) { mine <- data })
		defer sub2.Unsubscribe()
		flush(b)
		a.Publish(context.Background(), "room.3", []byte("x"))
		select {
		case <-mine:
		case <-time.After(10 * time.Second):
			t.Fatal("not delivered")
		}
		flush(a)
		select {
		case d := <-other:
			t.Fatalf("delivered to another subject: %q", d)
		default:
		}
	})
	t.Run("UnsubscribeStopsDelivery", func(t *testing.T) {
		a, b := open(t)
		got := make(chan []byte, 10)
		sub, _ := b.Subscribe("room.4", func(data []byte) { got <- data })
		flush(b)
		a.Publish(context.Background(), "room.4", []byte("before"))
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("not delivered before unsubscribing")
		}
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		flush(b)
		a.Publish(context.Background(), "room.4", []byte("after"))
		flush(a)
		flush(b)
		select {
		case d := <-got:
			t.Fatalf("delivered after Unsubscribe: %q", d)
		case <-time.After(100 * time.Millisecond):
		}
	})
	t.Run("BadSubjects", func(t *testing.T) {
		a, _ := open(t)
		for _, s := range []string{"", "a..b", ".a", "a.", "has space", "wild.*", "all.>", string(make([]byte, bus.MaxSubjectLen+1))} {
			if err := a.Publish(context.Background(), s, nil); !errors.Is(err, bus.ErrBadSubject) {
				t.Errorf("Publish(%.20q) = %v", s, err)
			}
			if _, err := a.Subscribe(s, func([]byte) {}); !errors.Is(err, bus.ErrBadSubject) {
				t.Errorf("Subscribe(%.20q) = %v", s, err)
			}
		}
	})
}

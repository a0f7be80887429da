package client

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoff_BoundsAndJitter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := Backoff{Initial: 5 * time.Second, Max: 60 * time.Second, Factor: 2, Jitter: 0.3, Rand: r.Float64}
	bases := []float64{5, 10, 20, 40, 60, 60, 60}
	for round := range 200 {
		b.Reset()
		for i, base := range bases {
			d := b.Next().Seconds()
			if d < base*0.7-1e-9 || d > base*1.3+1e-9 {
				t.Fatalf("round %d attempt %d: %.2fs outside %.0f±30%%", round, i, d, base)
			}
		}
	}
	// The jitter really spreads: many distinct first delays, covering most
	// of the ±30 % band.
	lo, hi, seen := 1e9, 0.0, map[int64]bool{}
	for range 1000 {
		b.Reset()
		d := b.Next()
		seen[d.Milliseconds()] = true
		lo, hi = min(lo, d.Seconds()), max(hi, d.Seconds())
	}
	if len(seen) < 500 || lo > 3.6 || hi < 6.4 {
		t.Fatalf("jitter spread: %d distinct, range %.2f–%.2f s", len(seen), lo, hi)
	}
}

// historyServer serves /api/v1/channels/{id}/messages from a fixed log.
func historyServer(t *testing.T, total int) (*httptest.Server, *atomic.Int64) {
	calls := new(atomic.Int64) // handlers run concurrently
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		var msgs []Message
		for s := after + 1; s <= int64(total) && len(msgs) < 3; s++ { // small pages
			msgs = append(msgs, Message{Channel: "c1", Seq: s, Body: fmt.Sprint("m", s)})
		}
		json.NewEncoder(w).Encode(map[string]any{"messages": msgs, "has_more": after+int64(len(msgs)) < int64(total)})
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

// signedInClient is a client of srv holding a token, without a connection:
// tests feed it frames directly.
func signedInClient(t *testing.T, srv *httptest.Server) (*Client, context.Context) {
	t.Helper()
	c, err := New(Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c.access, c.expires = "tok", time.Now().Add(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return c, ctx
}

func TestDeliver_InOrderOnceWithGapsFilled(t *testing.T) {
	srv, calls := historyServer(t, 10)
	c, ctx := signedInClient(t, srv)
	c.Follow("c1", 1)
	// 2 arrives, then a duplicate 2, then 9 and 10 (a gap: 3–8), then 5 again.
	for _, s := range []int64{2, 2, 9, 10, 5} {
		c.deliver(ctx, &Message{Channel: "c1", Seq: s, Body: fmt.Sprint("m", s)})
	}
	var got []int64
	deadline := time.After(10 * time.Second)
	for len(got) < 9 {
		select {
		case e := <-c.Events():
			got = append(got, e.Message.Seq)
		case <-deadline:
			t.Fatalf("got %v", got)
		}
	}
	for i, s := range got {
		if s != int64(i+2) {
			t.Fatalf("delivered %v, want 2…10 in order, once each", got)
		}
	}
	c.bg.Wait()
	select {
	case e := <-c.Events():
		t.Fatalf("extra event %+v", e.Message)
	default:
	}
	if calls.Load() == 0 {
		t.Fatal("the gap was not filled from history")
	}
}

func TestNew_RejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "chat.example.com", "https://"} {
		if _, err := New(Config{BaseURL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// A conversation this connection is added to may have messages sent before
// the connection joined its stream (another node, a race): the
// conversation_added frame's last_seq tells where to fetch from.
func TestConversationAdded_FetchesWhatCameBefore(t *testing.T) {
	srv, calls := historyServer(t, 4)
	c, ctx := signedInClient(t, srv)
	c.handleFrame(ctx, []byte(`{"type":"conversation_added","channel":"c1","member":"u1","last_seq":1}`))
	c.deliver(ctx, &Message{Channel: "c1", Seq: 4, Body: "m4"}) // live, ahead of what history brings
	var got []int64
	added := false
	deadline := time.After(10 * time.Second)
	for len(got) < 3 {
		select {
		case e := <-c.Events():
			if e.Type == "conversation_added" {
				added = true
				continue
			}
			got = append(got, e.Message.Seq)
		case <-deadline:
			t.Fatalf("got %v", got)
		}
	}
	c.bg.Wait()
	if !added || fmt.Sprint(got) != "[2 3 4]" || calls.Load() == 0 {
		t.Fatalf("added=%v messages=%v history calls=%d; want the event and 2, 3, 4 in order", added, got, calls.Load())
	}
}

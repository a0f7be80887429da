package chat_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/postgres"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/internal/testenv"
)

var unlimited = ratelimit.Limit{Burst: 1 << 30, Every: time.Nanosecond}

// BenchmarkSend_GroupCommit measures stored messages per second through the
// service's send pipeline (validation, group commit with synchronous=FULL,
// ack callback, fan-out to the hub) with 1 to 256 concurrent senders in 8
// conversations, on a SQLite file (synchronous=FULL) and on PostgreSQL.
func BenchmarkSend_GroupCommit(b *testing.B) {
	opens := []struct {
		name string
		open func(b *testing.B) (*sqldb.DB, error)
	}{
		{"sqlite", func(b *testing.B) (*sqldb.DB, error) {
			return sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
		}},
		{"postgres", func(b *testing.B) (*sqldb.DB, error) {
			return postgres.Open(context.Background(), testenv.PostgresDSN(b))
		}},
	}
	for _, o := range opens {
		writers := 1
		if o.name == "postgres" {
			writers = 8 // what serve uses for PostgreSQL
		}
		for _, senders := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/senders=%d", o.name, senders), func(b *testing.B) { benchSend(b, o.open, senders, writers) })
		}
	}
}

func benchSend(b *testing.B, open func(b *testing.B) (*sqldb.DB, error), senders, writers int) {
	db, err := open(b)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc := chat.New(db, hub.NewRouter(hub.New(), &local.Bus{}, nil), chat.Config{SendRate: unlimited, Writers: writers}, nil)
	defer svc.Close()
	ctx := context.Background()
	actors := make([]chat.Actor, senders)
	convs := make([]string, 8)
	owner := &unhidra.User{Name: "owner", Role: unhidra.RoleMember}
	db.CreateUser(ctx, owner)
	for i := range convs {
		c, err := svc.CreateChannel(ctx, chat.Actor{ID: owner.ID}, fmt.Sprint("c", i), false)
		if err != nil {
			b.Fatal(err)
		}
		convs[i] = c.ID
	}
	for i := range actors {
		u := &unhidra.User{Name: fmt.Sprint("u", i), Role: unhidra.RoleMember}
		if err := db.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
		actors[i] = chat.Actor{ID: u.ID}
		for _, c := range convs {
			svc.Join(ctx, actors[i], c)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				_, _, err := svc.Send(ctx, actors[i], chat.SendInput{Channel: convs[n%8], Body: "benchmark message body of a typical length", ClientID: fmt.Sprint(n)}, nil)
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkEndToEnd_WebSocket measures, over real WebSocket connections on
// loopback, the messages per second stored and delivered, and the latency
// from a send frame to its delivery at another member, with 1, 4 or 32
// senders in one channel (each waits for its ack before sending again) and
// one receiving member; the senders receive every message too.
func BenchmarkEndToEnd_WebSocket(b *testing.B) {
	for _, senders := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) { benchEndToEnd(b, senders) })
	}
}

func benchEndToEnd(b *testing.B, senders int) {
	h := newHarnessWith(b, chat.Config{SendRate: unlimited}, gateway.Config{MessageRate: unlimited})
	recv := h.dial(b, h.user("receiver", unhidra.RoleMember))
	clients := make([]*client, senders)
	for i := range clients {
		clients[i] = h.dial(b, h.user(fmt.Sprint("s", i), unhidra.RoleMember))
	}
	var sentAt sync.Map // message body → send time
	var next atomic.Int64
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				body := fmt.Sprint("m", n)
				sentAt.Store(body, time.Now())
				c.sendMsg(fmt.Sprint(n), unhidra.GeneralChannelID, body)
			}
		}()
	}
	for range b.N {
		f := recv.expect("message", nil)
		if at, ok := sentAt.Load(f.str("body")); ok {
			latencies = append(latencies, time.Since(at.(time.Time)))
		}
	}
	elapsed := time.Since(start)
	wg.Wait()
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if len(latencies) > 0 {
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkHistory measures REST-equivalent history queries (a page of 50
// from a conversation of 10,000 messages) per second.
func BenchmarkHistory(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc := chat.New(db, hub.NewRouter(hub.New(), &local.Bus{}, nil), chat.Config{SendRate: unlimited}, nil)
	defer svc.Close()
	ctx := context.Background()
	u := &unhidra.User{Name: "u", Role: unhidra.RoleMember}
	db.CreateUser(ctx, u)
	const total = 10000
	for i := 0; i < total; i += 500 {
		reqs := make([]store.AppendRequest, 500)
		for j := range reqs {
			reqs[j] = store.AppendRequest{ConversationID: unhidra.GeneralChannelID, SenderID: u.ID, Body: "history message body"}
		}
		if _, err := db.AppendMessages(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	actor := chat.Actor{ID: u.ID}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int64(0)
		for pb.Next() {
			i++
			before := 1 + (i*997)%total
			if _, err := svc.History(ctx, actor, unhidra.GeneralChannelID, &before, nil, 50); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

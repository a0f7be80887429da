package chat

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

// BenchmarkConnect measures what chat does per WebSocket connect and
// disconnect of a person (subscriptions, presence) for an identity in three
// conversations, one connection of it staying open (a reconnect storm):
// "cached" as it runs, "store" with the member cache dropped before every
// connect, i.e. the store reads every connect did before the cache.
func BenchmarkConnect(b *testing.B) {
	for _, mode := range []string{"cached", "store"} {
		b.Run(mode, func(b *testing.B) {
			db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s := New(db, hub.NewRouter(hub.New(), &local.Bus{}, nil), Config{}, nil)
			defer s.Close()
			ctx := context.Background()
			u := &unhidra.User{Name: "ann", Role: unhidra.RoleMember, PasswordHash: "x"}
			if err := db.CreateUser(ctx, u); err != nil {
				b.Fatal(err)
			}
			for i := range 2 {
				if _, err := s.CreateChannel(ctx, Actor{ID: u.ID, Name: u.Name}, fmt.Sprintf("c%d", i), false); err != nil {
					b.Fatal(err)
				}
			}
			keep := benchIdentityClient{id: 1, who: u.ID}
			s.Connect(keep)
			defer s.Disconnect(keep)
			b.ReportAllocs()
			id := uint64(1)
			for b.Loop() {
				if mode == "store" {
					s.ForgetMemberships()
				}
				id++
				c := benchIdentityClient{id: id, who: u.ID}
				s.Connect(c)
				s.Disconnect(c)
			}
		})
	}
}

type benchIdentityClient struct {
	benchClient
	id  uint64
	who string
}

func (c benchIdentityClient) ConnID() uint64   { return c.id }
func (c benchIdentityClient) Identity() string { return c.who }

package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

// connectFixture is one account in 5 channels with 20 other members, the
// shape the WebSocket connect path reads (account, conversations, co-members).
func connectFixture(tb testing.TB) (*sqldb.DB, string) {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "unhidra.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	newUser := func(name string) *unhidra.User {
		u := &unhidra.User{Name: name, Role: unhidra.RoleMember, PasswordHash: "$argon2id$x"}
		if err := db.CreateUser(ctx, u); err != nil {
			tb.Fatal(err)
		}
		return u
	}
	me := newUser("me")
	var others []*unhidra.User
	for i := range 20 {
		others = append(others, newUser(fmt.Sprintf("other%d", i)))
	}
	for i := range 5 {
		c := &unhidra.Conversation{Name: fmt.Sprintf("chan%d", i), Kind: unhidra.KindPublic}
		if err := db.CreateChannel(ctx, c, me.ID); err != nil {
			tb.Fatal(err)
		}
		for _, o := range others[i*4 : i*4+4] {
			if _, err := db.AddMember(ctx, c.ID, o.ID, unhidra.ChanMember); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return db, me.ID
}

// connectReads is what one WebSocket handshake and its OnOpen read.
func connectReads(ctx context.Context, db *sqldb.DB, id string) error {
	if _, err := db.UserByID(ctx, id); err != nil {
		return err
	}
	views, err := db.Conversations(ctx, id)
	if err != nil {
		return err
	}
	if len(views) < 5 {
		return fmt.Errorf("%d conversations, want at least 5", len(views))
	}
	co, err := db.CoMembers(ctx, id)
	if err != nil {
		return err
	}
	if len(co) < 20 {
		return fmt.Errorf("%d co-members, want at least 20", len(co))
	}
	return nil
}

// BenchmarkConnectReads: the store reads of one WebSocket connect, from 16
// goroutines at once (a reconnect storm).
func BenchmarkConnectReads(b *testing.B) {
	db, id := connectFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := connectReads(ctx, db, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestConnectReads_Concurrent checks the cached statements under concurrent
// use, with the results the fixture implies.
func TestConnectReads_Concurrent(t *testing.T) {
	db, id := connectFixture(t)
	ctx := context.Background()
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			var err error
			for range 50 {
				if err = connectReads(ctx, db, id); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

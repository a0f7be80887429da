// Package storetest is the behaviour suite every store implementation must
// pass. store/sqlite and store/postgres both call Run, so the two databases
// are held to exactly the same contract.
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/protocol"
)

// Opener returns a fresh, migrated, empty store for one test.
type Opener func(t *testing.T) *sqldb.DB

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	t.Run("Users", func(t *testing.T) { testUsers(t, open) })
	t.Run("RefreshTokens", func(t *testing.T) { testTokens(t, open) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open) })
	t.Run("Chat", func(t *testing.T) { testChat(t, open) })
	t.Run("Devices", func(t *testing.T) { testDevices(t, open) })
	t.Run("Migrate", func(t *testing.T) { testMigrate(t, open) })
}

// clock is a settable time source for db.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(db *sqldb.DB) *clock {
	c := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	db.Now = c.now
	return c
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := unhidra.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func mustCreateUser(t *testing.T, db *sqldb.DB, name string) *unhidra.User {
	t.Helper()
	u := &unhidra.User{Name: name, Role: unhidra.RoleMember, PasswordHash: "$argon2id$x"}
	if err := db.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func testMigrate(t *testing.T, open Opener) {
	db := open(t)
	// Applying again is a no-op that reports the same version.
	v1, err := db.Migrate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := db.Migrate(context.Background())
	if err != nil || v1 != v2 || v1 < 1 {
		t.Fatalf("Migrate twice = %d, %d, %v; want equal positive versions", v1, v2, err)
	}
}

func testUsers(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("CreateAndFind", func(t *testing.T) {
		db := open(t)
		newClock(db)
		u := &unhidra.User{Name: "Zoë", DisplayName: "Zoë Ø", Role: unhidra.RoleAdmin, PasswordHash: "h"}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if u.ID == "" || u.CreatedAt.IsZero() {
			t.Fatalf("CreateUser did not fill ID/CreatedAt: %+v", u)
		}
		got, err := db.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Zoë" || got.DisplayName != "Zoë Ø" || got.Role != unhidra.RoleAdmin || got.PasswordHash != "h" ||
			!got.CreatedAt.Equal(u.CreatedAt) || got.Disabled {
			t.Fatalf("UserByID = %+v, want %+v", got, u)
		}
		byName, err := db.UserByName(ctx, "ZOË")
		if err != nil || byName.ID != u.ID {
			t.Fatalf("UserByName case-insensitive = %v, %v", byName, err)
		}
	})
	t.Run("ErrNameTaken", func(t *testing.T) {
		db := open(t)
		mustCreateUser(t, db, "alice")
		err := db.CreateUser(ctx, &unhidra.User{Name: "ALICE", Role: unhidra.RoleMember})
		wantCode(t, err, protocol.ErrConflict)
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		db := open(t)
		_, err := db.UserByID(ctx, "usr_nope")
		wantCode(t, err, protocol.ErrNotFound)
		_, err = db.UserByName(ctx, "nobody")
		wantCode(t, err, protocol.ErrNotFound)
		_, err = db.UpdateUser(ctx, "usr_nope", store.UserUpdate{})
		wantCode(t, err, protocol.ErrNotFound)
	})
	t.Run("Update", func(t *testing.T) {
		db := open(t)
		c := newClock(db)
		u := mustCreateUser(t, db, "bob")
		c.add(time.Minute)
		disabled, fails, until, hash := true, 3, c.now().Add(time.Hour), "new-hash"
		got, err := db.UpdateUser(ctx, u.ID, store.UserUpdate{Disabled: &disabled, FailedLogins: &fails, LockedUntil: &until, PasswordHash: &hash})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Disabled || got.FailedLogins != 3 || !got.LockedUntil.Equal(until) || got.PasswordHash != hash ||
			!got.UpdatedAt.Equal(c.now()) || got.Name != "bob" {
			t.Fatalf("UpdateUser = %+v", got)
		}
		zero := time.Time{}
		got, err = db.UpdateUser(ctx, u.ID, store.UserUpdate{LockedUntil: &zero})
		if err != nil || !got.LockedUntil.IsZero() {
			t.Fatalf("clearing LockedUntil: %+v, %v", got, err)
		}
	})
	t.Run("ListAndCount", func(t *testing.T) {
		db := open(t)
		var ids []string
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			ids = append(ids, mustCreateUser(t, db, n).ID)
		}
		admin := unhidra.RoleAdmin
		if _, err := db.UpdateUser(ctx, ids[2], store.UserUpdate{Role: &admin}); err != nil {
			t.Fatal(err)
		}
		n, err := db.CountUsers(ctx)
		if err != nil || n != 5 {
			t.Fatalf("CountUsers = %d, %v", n, err)
		}
		page1, err := db.Users(ctx, store.UserFilter{Limit: 2})
		if err != nil || len(page1) != 2 {
			t.Fatalf("page 1 = %d users, %v", len(page1), err)
		}
		page2, err := db.Users(ctx, store.UserFilter{Limit: 10, After: page1[1].ID})
		if err != nil || len(page2) != 3 {
			t.Fatalf("page 2 = %d users, %v", len(page2), err)
		}
		admins, err := db.Users(ctx, store.UserFilter{Role: &admin})
		if err != nil || len(admins) != 1 || admins[0].ID != ids[2] {
			t.Fatalf("admins = %v, %v", admins, err)
		}
	})
}

func testTokens(t *testing.T, open Opener) {
	ctx := context.Background()
	setup := func(t *testing.T) (*sqldb.DB, *clock, *unhidra.User) {
		db := open(t)
		c := newClock(db)
		return db, c, mustCreateUser(t, db, "carol")
	}
	t.Run("RotateOK", func(t *testing.T) {
		db, c, u := setup(t)
		first := &store.RefreshToken{Hash: "h1", FamilyID: "fam1", UserID: u.ID, ExpiresAt: c.now().Add(time.Hour)}
		if err := db.CreateRefreshToken(ctx, first); err != nil {
			t.Fatal(err)
		}
		next := &store.RefreshToken{Hash: "h2", ExpiresAt: c.now().Add(2 * time.Hour)}
		old, err := db.RotateRefreshToken(ctx, "h1", next)
		if err != nil {
			t.Fatal(err)
		}
		if old.UserID != u.ID || old.FamilyID != "fam1" || next.FamilyID != "fam1" || next.UserID != u.ID {
			t.Fatalf("rotate: old=%+v next=%+v", old, next)
		}
		got, err := db.RefreshTokenByHash(ctx, "h2")
		if err != nil || got.FamilyID != "fam1" || !got.UsedAt.IsZero() {
			t.Fatalf("new token = %+v, %v", got, err)
		}
	})
	t.Run("ErrReuse", func(t *testing.T) {
		db, c, u := setup(t)
		db.CreateRefreshToken(ctx, &store.RefreshToken{Hash: "h1", FamilyID: "f", UserID: u.ID, ExpiresAt: c.now().Add(time.Hour)})
		if _, err := db.RotateRefreshToken(ctx, "h1", &store.RefreshToken{Hash: "h2", ExpiresAt: c.now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		old, err := db.RotateRefreshToken(ctx, "h1", &store.RefreshToken{Hash: "h3", ExpiresAt: c.now().Add(time.Hour)})
		wantCode(t, err, protocol.ErrConflict)
		if old == nil || old.FamilyID != "f" {
			t.Fatalf("reuse must return the old record to revoke its family, got %+v", old)
		}
		if _, err := db.RefreshTokenByHash(ctx, "h3"); unhidra.ErrorCode(err) != protocol.ErrNotFound {
			t.Fatalf("a reuse must not store the new token: %v", err)
		}
		n, err := db.RevokeTokenFamily(ctx, "f")
		if err != nil || n != 1 {
			t.Fatalf("RevokeTokenFamily = %d, %v; want 1 live token (h2)", n, err)
		}
		_, err = db.RotateRefreshToken(ctx, "h2", &store.RefreshToken{Hash: "h4", ExpiresAt: c.now().Add(time.Hour)})
		wantCode(t, err, protocol.ErrNotFound)
	})
	t.Run("ErrExpired", func(t *testing.T) {
		db, c, u := setup(t)
		db.CreateRefreshToken(ctx, &store.RefreshToken{Hash: "h1", FamilyID: "f", UserID: u.ID, ExpiresAt: c.now().Add(time.Hour)})
		c.add(time.Hour)
		_, err := db.RotateRefreshToken(ctx, "h1", &store.RefreshToken{Hash: "h2", ExpiresAt: c.now().Add(time.Hour)})
		wantCode(t, err, protocol.ErrNotFound)
		n, err := db.DeleteExpiredTokens(ctx, c.now().Add(time.Millisecond))
		if err != nil || n != 1 {
			t.Fatalf("DeleteExpiredTokens = %d, %v", n, err)
		}
	})
	t.Run("ErrUnknown", func(t *testing.T) {
		db, c, _ := setup(t)
		_, err := db.RotateRefreshToken(ctx, "nope", &store.RefreshToken{Hash: "h2", ExpiresAt: c.now().Add(time.Hour)})
		wantCode(t, err, protocol.ErrNotFound)
	})
	t.Run("ConcurrentRotateHasOneWinner", func(t *testing.T) {
		db, c, u := setup(t)
		db.CreateRefreshToken(ctx, &store.RefreshToken{Hash: "h1", FamilyID: "f", UserID: u.ID, ExpiresAt: c.now().Add(time.Hour)})
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = db.RotateRefreshToken(ctx, "h1", &store.RefreshToken{Hash: "next" + string(rune('a'+i)), ExpiresAt: c.now().Add(time.Hour)})
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch unhidra.ErrorCode(err) {
			case "":
				wins++
			case protocol.ErrConflict:
			default:
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d concurrent rotations succeeded, want exactly 1", wins)
		}
	})
	t.Run("RevokeUser", func(t *testing.T) {
		db, c, u := setup(t)
		other := mustCreateUser(t, db, "dave")
		for i, uid := range []string{u.ID, u.ID, other.ID} {
			db.CreateRefreshToken(ctx, &store.RefreshToken{Hash: string(rune('a' + i)), FamilyID: "f" + string(rune('a'+i)), UserID: uid, ExpiresAt: c.now().Add(time.Hour)})
		}
		n, err := db.RevokeUserTokens(ctx, u.ID)
		if err != nil || n != 2 {
			t.Fatalf("RevokeUserTokens = %d, %v", n, err)
		}
		got, _ := db.RefreshTokenByHash(ctx, "c")
		if !got.RevokedAt.IsZero() {
			t.Fatal("another user's token was revoked")
		}
	})
	t.Run("ErrDuplicate", func(t *testing.T) {
		db, c, u := setup(t)
		tok := &store.RefreshToken{Hash: "dup", FamilyID: "f", UserID: u.ID, ExpiresAt: c.now().Add(time.Hour)}
		db.CreateRefreshToken(ctx, tok)
		wantCode(t, db.CreateRefreshToken(ctx, tok), protocol.ErrConflict)
	})
}

func testAudit(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	c := newClock(db)
	events := []unhidra.AuditEvent{
		{Action: unhidra.AuditLoginFailure, ActorID: "u1", IP: "10.0.0.1"},
		{Action: unhidra.AuditLoginSuccess, ActorID: "u1", IP: "10.0.0.1", Detail: `{"ua":"x"}`},
		{Action: unhidra.AuditPasswordChanged, ActorID: "u2", Target: "u2"},
		{Action: unhidra.AuditLoginSuccess, ActorID: "u2"},
		{Action: "login_x", ActorID: "u3"}, // must not match the "login." prefix
	}
	for i := range events {
		c.add(time.Second)
		if err := db.AppendAudit(ctx, &events[i]); err != nil {
			t.Fatal(err)
		}
		if events[i].ID == 0 || events[i].At.IsZero() {
			t.Fatalf("AppendAudit did not fill ID/At: %+v", events[i])
		}
	}
	all, err := db.AuditEvents(ctx, store.AuditFilter{})
	if err != nil || len(all) != 5 || all[0].Action != "login_x" {
		t.Fatalf("all events newest first: %d, %v", len(all), err)
	}
	if all[3].Detail != `{"ua":"x"}` || all[3].IP != "10.0.0.1" {
		t.Fatalf("event fields lost: %+v", all[3])
	}
	logins, _ := db.AuditEvents(ctx, store.AuditFilter{Action: "login."})
	if len(logins) != 3 {
		t.Fatalf("prefix login. = %d events, want 3", len(logins))
	}
	success, _ := db.AuditEvents(ctx, store.AuditFilter{Action: unhidra.AuditLoginSuccess, ActorID: "u2"})
	if len(success) != 1 {
		t.Fatalf("login.success by u2 = %d, want 1", len(success))
	}
	since, _ := db.AuditEvents(ctx, store.AuditFilter{Since: events[2].At, Until: events[4].At})
	if len(since) != 2 {
		t.Fatalf("time window = %d, want 2", len(since))
	}
	page, _ := db.AuditEvents(ctx, store.AuditFilter{Limit: 2})
	rest, _ := db.AuditEvents(ctx, store.AuditFilter{Before: page[1].ID, Limit: 10})
	if len(page) != 2 || len(rest) != 3 {
		t.Fatalf("paging: %d then %d", len(page), len(rest))
	}
	for _, e := range rest {
		if e.ID >= page[1].ID {
			t.Fatal("Before did not page backwards")
		}
	}
}

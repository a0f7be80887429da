package auth_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// TestService_EpochEndsEverySession: each change that must end sessions
// kills access tokens issued before it, announces the identity, and the new
// session (for a password change) works.
func TestService_EpochEndsEverySession(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	var mu sync.Mutex
	var states []auth.IdentityState
	h.svc.OnIdentityChange = func(st auth.IdentityState) { mu.Lock(); states = append(states, st); mu.Unlock() }
	admin, err := h.svc.CreateUser(ctx, nil, "boss", "correct horse battery", unhidra.RoleAdmin, req)
	if err != nil {
		t.Fatal(err)
	}
	s := h.register(t, "hank", "correct horse battery")
	uid := s.User.ID
	login := func() *auth.Session {
		t.Helper()
		s, err := h.svc.Login(ctx, "hank", "correct horse battery", req)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mustDie := func(what, token string) {
		t.Helper()
		if _, err := h.svc.Authenticate(ctx, token); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
			t.Fatalf("%s: old token = %v, want 401", what, err)
		}
	}
	// Warm the cache: the change must invalidate it.
	if _, err := h.svc.Authenticate(ctx, s.AccessToken); err != nil {
		t.Fatal(err)
	}
	next, err := h.svc.ChangePassword(ctx, s.User, "correct horse battery", "purple monkey dishwasher", req)
	if err != nil {
		t.Fatal(err)
	}
	mustDie("password change", s.AccessToken)
	if _, err := h.svc.Authenticate(ctx, next.AccessToken); err != nil {
		t.Fatalf("the new session after a password change: %v", err)
	}
	if err := h.svc.ResetPassword(ctx, admin, uid, "correct horse battery", req); err != nil {
		t.Fatal(err)
	}
	mustDie("admin reset", next.AccessToken)

	s = login()
	u, _ := h.db.UserByID(ctx, uid)
	if err := h.svc.SignOutEverywhere(ctx, u, req); err != nil {
		t.Fatal(err)
	}
	mustDie("sign out everywhere", s.AccessToken)

	s = login()
	if _, err := h.svc.SetRole(ctx, admin, uid, unhidra.RoleAdmin, req); err != nil {
		t.Fatal(err)
	}
	mustDie("role change", s.AccessToken)
	if _, err := h.svc.SetRole(ctx, admin, admin.ID, unhidra.RoleMember, req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("own role change = %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(states) < 4 {
		t.Fatalf("%d identity changes announced, want at least 4", len(states))
	}
	last := states[len(states)-1]
	if last.ID != uid || !last.Active || last.Epoch < 4 {
		t.Fatalf("last change %+v, want user %s active with epoch >= 4", last, uid)
	}
}

// TestService_WatcherCarriesOtherProcessChanges: a change written to the
// database by another service (the command line) reaches this one through
// WatchIdentityEvents, and its cache.
func TestService_WatcherCarriesOtherProcessChanges(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	s := h.register(t, "ivy", "correct horse battery")
	if _, err := h.svc.Authenticate(ctx, s.AccessToken); err != nil {
		t.Fatal(err)
	}
	got := make(chan auth.IdentityState, 4)
	h.svc.OnIdentityChange = func(st auth.IdentityState) { got <- st }
	var wg sync.WaitGroup
	wg.Go(func() { h.svc.WatchIdentityEvents(ctx, 20*time.Millisecond) })
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(50 * time.Millisecond) // the watcher has read its position

	hasher, _ := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	cli := auth.NewService(h.db, hasher, nil, auth.Limits{}, nil)
	if _, err := cli.SetDisabled(ctx, nil, s.User.ID, true, req); err != nil {
		t.Fatal(err)
	}
	// The watcher may first re-report the account's creation (an identity
	// event too, within its lookback): the disable must follow.
	deadline := time.After(time.Second)
	for done := false; !done; {
		select {
		case st := <-got:
			if st.ID != s.User.ID {
				t.Fatalf("change %+v, want one of %s", st, s.User.ID)
			}
			done = !st.Active
		case <-deadline:
			t.Fatal("the watcher did not report the other process's change within 1 s")
		}
	}
	if _, err := h.svc.Authenticate(ctx, s.AccessToken); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("token after a disable by another process = %v, want 401", err)
	}
}

// TestService_LockoutSameForKnownAndUnknown: six wrong sign-ins from one
// address give the same statuses for an existing and a made-up name, and
// the owner's own address still signs in during the attack.
func TestService_LockoutSameForKnownAndUnknown(t *testing.T) {
	h := newHarness(t, auth.Limits{LoginPerIP: ratelimit.Limit{Burst: 1000, Every: time.Millisecond}})
	ctx := context.Background()
	h.register(t, "jade", "correct horse battery")
	owner := auth.Request{IP: "198.51.100.10"}
	if _, err := h.svc.Login(ctx, "jade", "correct horse battery", owner); err != nil {
		t.Fatal(err)
	}
	seq := func(name string) []string {
		var out []string
		for range 6 {
			_, err := h.svc.Login(ctx, name, "wrong guess number one", auth.Request{IP: "203.0.113.66"})
			out = append(out, fmt.Sprintf("%s/%d", unhidra.ErrorCode(err), unhidra.RetryAfter(err)))
		}
		return out
	}
	known, unknown := seq("jade"), seq("nobody-here")
	if fmt.Sprint(known) != fmt.Sprint(unknown) {
		t.Fatalf("known name %v, unknown name %v; want identical", known, unknown)
	}
	if known[5] != protocol.ErrRateLimited+"/60" {
		t.Fatalf("sixth attempt %s, want the attacker's address throttled", known[5])
	}
	// A distributed attack: many addresses, each under its own limit,
	// exhaust the account's global budget.
	for i := range 40 {
		h.svc.Login(ctx, "jade", "wrong guess number two", auth.Request{IP: fmt.Sprintf("203.0.113.%d", 100+i)})
	}
	if _, err := h.svc.Login(ctx, "jade", "correct horse battery", auth.Request{IP: "192.0.2.200"}); unhidra.ErrorCode(err) != protocol.ErrRateLimited {
		t.Fatalf("new address during a distributed attack = %v, want slowed (429)", err)
	}
	if _, err := h.svc.Login(ctx, "jade", "correct horse battery", owner); err != nil {
		t.Fatalf("owner's address during the attack: %v", err)
	}
}

// TestService_ServiceAccounts: bots have no password, cannot sign in with
// one, and an administrator cannot give them one.
func TestService_ServiceAccounts(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	if _, err := h.svc.CreateUser(ctx, nil, "helper", "correct horse battery", unhidra.RoleBot, req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("bot with a password = %v", err)
	}
	bot, err := h.svc.CreateUser(ctx, nil, "helper", "", unhidra.RoleBot, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.svc.ResetPassword(ctx, nil, bot.ID, "correct horse battery", req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("reset a bot's password = %v", err)
	}
	if _, err := h.svc.SetRole(ctx, nil, bot.ID, unhidra.RoleAdmin, req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("make a bot admin = %v", err)
	}
	// Even a bot with a password hash (an older database) cannot sign in.
	hash, _ := auth.HashPassword("correct horse battery", auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	h.db.UpdateUser(ctx, bot.ID, store.UserUpdate{PasswordHash: &hash})
	_, err = h.svc.Login(ctx, "helper", "correct horse battery", req)
	if unhidra.ErrorCode(err) != protocol.ErrUnauthorized || unhidra.ErrorMessage(err) != "Invalid name or password." {
		t.Fatalf("bot login = %v, want the wrong-password answer", err)
	}
}

package auth_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/protocol"
)

// fastParams keep unit tests quick; the hasher tests cover the real ones.
var fastParams = auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type harness struct {
	svc    *auth.Service
	db     *sqldb.DB
	clock  *fakeClock
	hasher *countingHasher
}

// countingHasher wraps the real hasher to observe that unknown accounts
// still cost a verification.
type countingHasher struct {
	*auth.PasswordHasher
	mu      sync.Mutex
	dummies int
}

func (c *countingHasher) VerifyDummy(ctx context.Context, pw string) error {
	c.mu.Lock()
	c.dummies++
	c.mu.Unlock()
	return c.PasswordHasher.VerifyDummy(ctx, pw)
}

func newHarness(t *testing.T, limits auth.Limits) *harness {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &fakeClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	db.Now = clk.Now
	ph, err := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: fastParams})
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, clk.t)
	h := &harness{db: db, clock: clk, hasher: &countingHasher{PasswordHasher: ph}}
	h.svc = auth.NewService(db, h.hasher, &auth.Tokens{Keys: ks, Now: clk.Now}, limits, nil)
	h.svc.Now = clk.Now
	return h
}

var req = auth.Request{IP: "192.0.2.1", UserAgent: "test"}

func (h *harness) register(t *testing.T, name, pw string) *auth.Session {
	t.Helper()
	s, err := h.svc.Register(context.Background(), name, pw, "", req)
	if err != nil {
		t.Fatalf("Register(%q): %v", name, err)
	}
	return s
}

func (h *harness) auditCount(t *testing.T, action string) int {
	t.Helper()
	ev, err := h.db.AuditEvents(context.Background(), store.AuditFilter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return len(ev)
}

func TestService_RegisterLoginRefresh(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	s := h.register(t, "alice", "correct horse battery")
	if s.TokenType != "Bearer" || s.ExpiresIn != 900 || s.User.Name != "alice" || s.RefreshToken == "" {
		t.Fatalf("session = %+v", s)
	}
	u, err := h.svc.Authenticate(ctx, s.AccessToken)
	if err != nil || u.ID != s.User.ID {
		t.Fatalf("Authenticate = %v, %v", u, err)
	}
	if _, err := h.svc.Login(ctx, "ALICE", "correct horse battery", req); err != nil {
		t.Fatalf("login with other case: %v", err)
	}
	r1, err := h.svc.Refresh(ctx, s.RefreshToken, req)
	if err != nil || r1.RefreshToken == s.RefreshToken {
		t.Fatalf("Refresh = %+v, %v", r1, err)
	}
	if h.auditCount(t, unhidra.AuditUserRegistered) != 1 || h.auditCount(t, unhidra.AuditLoginSuccess) != 1 {
		t.Fatal("registration and login not audited")
	}
}

func TestService_RefreshReuseRevokesFamily(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	s := h.register(t, "bob", "correct horse battery")
	r1, err := h.svc.Refresh(ctx, s.RefreshToken, req)
	if err != nil {
		t.Fatal(err)
	}
	// An attacker replays the first token: rejected, and the family dies.
	if _, err := h.svc.Refresh(ctx, s.RefreshToken, req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("reuse = %v, want protocol.ErrUnauthorized", err)
	}
	if _, err := h.svc.Refresh(ctx, r1.RefreshToken, req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("legitimate token after reuse = %v, want revoked", err)
	}
	if h.auditCount(t, unhidra.AuditTokenReuse) != 1 {
		t.Fatal("reuse not audited")
	}
	// Another session of the same user is unaffected.
	other, _ := h.svc.Login(ctx, "bob", "correct horse battery", req)
	if _, err := h.svc.Refresh(ctx, other.RefreshToken, req); err != nil {
		t.Fatalf("unrelated family revoked: %v", err)
	}
}

func TestService_Logout(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	s := h.register(t, "carol", "correct horse battery")
	mallory := h.register(t, "mallory", "correct horse battery")
	if err := h.svc.Logout(ctx, mallory.User, s.RefreshToken, req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("logging out someone else's session = %v", err)
	}
	if err := h.svc.Logout(ctx, s.User, s.RefreshToken, req); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Refresh(ctx, s.RefreshToken, req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("refresh after logout = %v", err)
	}
}

func TestService_NoUserEnumeration(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	h.register(t, "dave", "correct horse battery")
	_, wrongPw := h.svc.Login(ctx, "dave", "wrong password 1", req)
	_, unknown := h.svc.Login(ctx, "nobody", "wrong password 1", req)
	_, badName := h.svc.Login(ctx, "\x00bad name", "wrong password 1", req)
	for _, err := range []error{wrongPw, unknown, badName} {
		if unhidra.ErrorCode(err) != protocol.ErrUnauthorized || unhidra.ErrorMessage(err) != "Invalid name or password." {
			t.Fatalf("login failure = %v; all failures must look alike", err)
		}
	}
	if h.hasher.dummies != 2 {
		t.Fatalf("unknown accounts ran %d dummy verifications, want 2", h.hasher.dummies)
	}
}

func TestService_LockoutWithBackoff(t *testing.T) {
	h := newHarness(t, auth.Limits{
		LoginPerIP: ratelimit.Limit{Burst: 1000, Every: time.Millisecond}, LoginPerAccount: ratelimit.Limit{Burst: 1000, Every: time.Millisecond},
		LockoutThreshold: 3, LockoutBase: time.Minute, LockoutMax: 10 * time.Minute,
	})
	ctx := context.Background()
	h.register(t, "erin", "correct horse battery")
	fail := func() error { _, err := h.svc.Login(ctx, "erin", "nope nope nope", req); return err }
	for range 2 {
		if unhidra.ErrorCode(fail()) != protocol.ErrUnauthorized {
			t.Fatal("early failure not protocol.ErrUnauthorized")
		}
	}
	fail() // third failure: locked for 1 minute
	_, err := h.svc.Login(ctx, "erin", "correct horse battery", req)
	if unhidra.ErrorCode(err) != protocol.ErrRateLimited || unhidra.RetryAfter(err) != 60 {
		t.Fatalf("right password while locked = %v (retry %d), want protocol.ErrRateLimited 60", err, unhidra.RetryAfter(err))
	}
	h.clock.t = h.clock.t.Add(61 * time.Second)
	fail() // fourth failure: 2 minutes
	_, err = h.svc.Login(ctx, "erin", "correct horse battery", req)
	if unhidra.RetryAfter(err) != 120 {
		t.Fatalf("second lockout retry = %d, want 120 (doubling)", unhidra.RetryAfter(err))
	}
	for range 5 { // far past the cap
		h.clock.t = h.clock.t.Add(11 * time.Minute)
		fail()
	}
	_, err = h.svc.Login(ctx, "erin", "correct horse battery", req)
	if unhidra.RetryAfter(err) != 600 {
		t.Fatalf("capped lockout retry = %d, want 600", unhidra.RetryAfter(err))
	}
	h.clock.t = h.clock.t.Add(11 * time.Minute)
	if _, err := h.svc.Login(ctx, "erin", "correct horse battery", req); err != nil {
		t.Fatalf("after lockout: %v", err)
	}
	// The success reset the counter: two failures do not lock.
	fail()
	fail()
	if _, err := h.svc.Login(ctx, "erin", "correct horse battery", req); err != nil {
		t.Fatalf("success did not reset the counter: %v", err)
	}
	if h.auditCount(t, unhidra.AuditLoginLocked) < 3 {
		t.Fatal("lockouts not audited")
	}
}

func TestService_ThrottlePerIPAndAccount(t *testing.T) {
	h := newHarness(t, auth.Limits{
		LoginPerIP:       ratelimit.Limit{Burst: 3, Every: time.Minute},
		LoginPerAccount:  ratelimit.Limit{Burst: 1000, Every: time.Millisecond},
		LockoutThreshold: 1000,
	})
	ctx := context.Background()
	for range 3 {
		h.svc.Login(ctx, "x1", "whatever pw", req)
	}
	_, err := h.svc.Login(ctx, "x1", "whatever pw", req)
	if unhidra.ErrorCode(err) != protocol.ErrRateLimited || unhidra.RetryAfter(err) != 60 {
		t.Fatalf("4th attempt from one IP = %v", err)
	}
	if _, err := h.svc.Login(ctx, "x1", "whatever pw", auth.Request{IP: "198.51.100.7"}); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("another IP throttled too: %v", err)
	}
	h.clock.t = h.clock.t.Add(time.Minute)
	if _, err := h.svc.Login(ctx, "x1", "whatever pw", req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("IP bucket did not refill one token per minute: %v", err)
	}

	h2 := newHarness(t, auth.Limits{
		LoginPerIP:       ratelimit.Limit{Burst: 1000, Every: time.Millisecond},
		LoginPerAccount:  ratelimit.Limit{Burst: 2, Every: time.Minute},
		LockoutThreshold: 1000,
	})
	for i := range 2 {
		h2.svc.Login(ctx, "target", "whatever pw", auth.Request{IP: "10.0.0." + string(rune('1'+i))})
	}
	if _, err := h2.svc.Login(ctx, "TARGET", "whatever pw", auth.Request{IP: "10.0.0.9"}); unhidra.ErrorCode(err) != protocol.ErrRateLimited {
		t.Fatalf("per-account throttle across IPs = %v", err)
	}
}

func TestService_RegistrationLimitsAndClosed(t *testing.T) {
	h := newHarness(t, auth.Limits{RegisterPerIP: ratelimit.Limit{Burst: 2, Every: time.Hour}})
	ctx := context.Background()
	h.register(t, "r1", "correct horse battery")
	h.register(t, "r2", "correct horse battery")
	if _, err := h.svc.Register(ctx, "r3", "correct horse battery", "", req); unhidra.ErrorCode(err) != protocol.ErrRateLimited {
		t.Fatalf("third registration from one IP = %v", err)
	}
	if _, err := h.svc.Register(ctx, "R1", "correct horse battery", "", auth.Request{IP: "10.1.1.1"}); unhidra.ErrorCode(err) != protocol.ErrConflict {
		t.Fatalf("duplicate name = %v", err)
	}
	h.svc.OpenRegistration = false
	if _, err := h.svc.Register(ctx, "r4", "correct horse battery", "", auth.Request{IP: "10.1.1.2"}); unhidra.ErrorCode(err) != protocol.ErrForbidden {
		t.Fatalf("closed registration = %v", err)
	}
}

func TestService_HostileNames(t *testing.T) {
	h := newHarness(t, auth.Limits{RegisterPerIP: ratelimit.Limit{Burst: 2, Every: time.Hour}})
	ctx := context.Background()
	for _, name := range []string{"", "a", "has space", "<script>", "\xff\xfe", "x\x00y", "-leading", string(make([]byte, 10000)),
		"waytoolongnamewaytoolongnamewaytoolong"} {
		if _, err := h.svc.Register(ctx, name, "correct horse battery", "", req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Errorf("Register(%.40q… %d bytes) = %v, want protocol.ErrInvalid", name, len(name), err)
		}
	}
	if _, err := h.svc.Register(ctx, "okname", "correct horse battery", "bad\x07display", req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Errorf("control character in display name accepted: %v", err)
	}
	// Unicode names are fine, and NFD input finds the NFC account.
	h.register(t, "José.ñ_日本", "correct horse battery")
	if _, err := h.svc.Login(ctx, norm.NFD.String("josé.ñ_日本"), "correct horse battery", req); err != nil {
		t.Fatalf("NFD login: %v", err)
	}
	if _, err := h.svc.Login(ctx, "x", string(make([]byte, 1<<20)), req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("1 MiB password at login = %v, want protocol.ErrInvalid before hashing", err)
	}
}

func TestService_ChangePasswordSignsOutOthers(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	s := h.register(t, "frank", "correct horse battery")
	other, _ := h.svc.Login(ctx, "frank", "correct horse battery", req)
	if _, err := h.svc.ChangePassword(ctx, s.User, "wrong one!", "another good pass", req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("wrong current password = %v", err)
	}
	if _, err := h.svc.ChangePassword(ctx, s.User, "correct horse battery", "short", req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("weak new password = %v", err)
	}
	ns, err := h.svc.ChangePassword(ctx, s.User, "correct horse battery", "another good pass", req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Refresh(ctx, other.RefreshToken, req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("other session survived a password change: %v", err)
	}
	if _, err := h.svc.Refresh(ctx, ns.RefreshToken, req); err != nil {
		t.Fatalf("new session: %v", err)
	}
	if _, err := h.svc.Login(ctx, "frank", "another good pass", req); err != nil {
		t.Fatalf("login with new password: %v", err)
	}
}

func TestService_DisableUser(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	admin, err := h.svc.CreateUser(ctx, nil, "boss", "correct horse battery", unhidra.RoleAdmin, req)
	if err != nil {
		t.Fatal(err)
	}
	s := h.register(t, "gina", "correct horse battery")
	if _, err := h.svc.SetDisabled(ctx, admin, admin.ID, true, req); unhidra.ErrorCode(err) != protocol.ErrInvalid {
		t.Fatalf("self-disable = %v", err)
	}
	if _, err := h.svc.SetDisabled(ctx, admin, s.User.ID, true, req); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Authenticate(ctx, s.AccessToken); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("disabled user's access token = %v", err)
	}
	if _, err := h.svc.Refresh(ctx, s.RefreshToken, req); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("disabled user's refresh = %v", err)
	}
	// The right password of a disabled account answers exactly like a
	// wrong one.
	_, right := h.svc.Login(ctx, "gina", "correct horse battery", req)
	_, wrong := h.svc.Login(ctx, "gina", "not the password at all", req)
	if right == nil || wrong == nil || right.Error() != wrong.Error() || unhidra.ErrorCode(right) != protocol.ErrUnauthorized {
		t.Fatalf("disabled login with the right password = %v, with a wrong one = %v; want the same 401", right, wrong)
	}
	if h.auditCount(t, unhidra.AuditUserDisabled) != 1 {
		t.Fatal("disable not audited")
	}
	// Re-enabling does not revive the old tokens.
	if _, err := h.svc.SetDisabled(ctx, admin, s.User.ID, false, req); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Authenticate(ctx, s.AccessToken); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("old access token after re-enable = %v, want 401", err)
	}
	if _, err := h.svc.Login(ctx, "gina", "correct horse battery", auth.Request{IP: "192.0.2.77"}); err != nil {
		t.Fatalf("login after re-enable: %v", err)
	}
}

func TestService_RehashOnLogin(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	h.register(t, "hank", "correct horse battery")
	before, _ := h.db.UserByName(ctx, "hank")
	// The operator raises the cost: the next login upgrades the hash.
	stronger := fastParams
	stronger.Time = 2
	ph, _ := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: stronger})
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, h.clock.t)
	svc := auth.NewService(h.db, ph, &auth.Tokens{Keys: ks, Now: h.clock.Now}, auth.Limits{}, nil)
	if _, err := svc.Login(ctx, "hank", "correct horse battery", req); err != nil {
		t.Fatal(err)
	}
	after, _ := h.db.UserByName(ctx, "hank")
	if after.PasswordHash == before.PasswordHash || auth.NeedsRehash(after.PasswordHash, stronger) {
		t.Fatalf("hash not upgraded: %s → %s", before.PasswordHash, after.PasswordHash)
	}
	if _, err := svc.Login(ctx, "hank", "correct horse battery", req); err != nil {
		t.Fatalf("login after rehash: %v", err)
	}
}

func TestService_Bootstrap(t *testing.T) {
	h := newHarness(t, auth.Limits{})
	ctx := context.Background()
	code, err := h.svc.StartBootstrap(ctx, time.Hour)
	if err != nil || len(code) != 19 {
		t.Fatalf("StartBootstrap = %q, %v", code, err)
	}
	if _, err := h.svc.Bootstrap(ctx, "AAAA-BBBB-CCCC-DDDD", "root", "correct horse battery", req); unhidra.ErrorCode(err) != protocol.ErrForbidden {
		t.Fatalf("wrong code = %v", err)
	}
	s, err := h.svc.Bootstrap(ctx, code, "root", "correct horse battery", req)
	if err != nil || s.User.Role != unhidra.RoleAdmin {
		t.Fatalf("Bootstrap = %+v, %v", s, err)
	}
	if _, err := h.svc.Bootstrap(ctx, code, "root2", "correct horse battery", req); unhidra.ErrorCode(err) != protocol.ErrForbidden {
		t.Fatalf("second use of the code = %v", err)
	}
	if again, _ := h.svc.StartBootstrap(ctx, time.Hour); again != "" {
		t.Fatal("bootstrap offered although an account exists")
	}

	h2 := newHarness(t, auth.Limits{})
	code, _ = h2.svc.StartBootstrap(ctx, time.Hour)
	h2.clock.t = h2.clock.t.Add(61 * time.Minute)
	if _, err := h2.svc.Bootstrap(ctx, code, "root", "correct horse battery", req); unhidra.ErrorCode(err) != protocol.ErrForbidden {
		t.Fatalf("expired code = %v", err)
	}
}

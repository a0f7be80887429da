package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

// newDefaultsServer is a server with the production limits, behind a
// trusted proxy on loopback so that tests can speak from many addresses
// (X-Forwarded-For).
func newDefaultsServer(t *testing.T, hasherCfg auth.PasswordHasherConfig) *testServer {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if hasherCfg.Params == (auth.PasswordParams{}) {
		hasherCfg.Params = auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	}
	hasher, err := auth.NewPasswordHasher(hasherCfg)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	ts := &testServer{db: db, ready: true}
	ts.accounts = auth.NewService(db, hasher, &auth.Tokens{Keys: ks}, auth.Limits{}, nil)
	ts.Server = httptest.NewServer(api.NewServer(api.Deps{
		Accounts: ts.accounts, Store: db, Ready: func() bool { return true },
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *testServer) loginFrom(t *testing.T, ip, name, password string) response {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"name": name, "password": password})
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/auth/login", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", ip)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return response{}
	}
	defer res.Body.Close()
	out := response{status: res.StatusCode, header: res.Header}
	json.NewDecoder(res.Body).Decode(&out.body)
	return out
}

// TestLogin_NoEnumerationNoVictimLockout: six wrong sign-ins for a known
// and for an unknown name give identical status sequences; the attacker's
// address is throttled, the owner's address is not, and the right password
// from elsewhere succeeds during the attack.
func TestLogin_NoEnumerationNoVictimLockout(t *testing.T) {
	ts := newDefaultsServer(t, auth.PasswordHasherConfig{})
	ts.register(t, "victor")
	const attacker, owner = "203.0.113.5", "198.51.100.20"
	seq := func(name string) string {
		var out []string
		for range 6 {
			r := ts.loginFrom(t, attacker, name, "not the right one at all")
			out = append(out, fmt.Sprintf("%d %s %s", r.status, r.errCode(), r.header.Get("Retry-After")))
		}
		return strings.Join(out, " | ")
	}
	known, unknown := seq("victor"), seq("nobody-by-that-name")
	t.Logf("known:   %s", known)
	t.Logf("unknown: %s", unknown)
	if known != unknown {
		t.Fatalf("status sequences differ:\nknown   %s\nunknown %s", known, unknown)
	}
	if !strings.HasSuffix(known, "429 rate_limited 60") {
		t.Fatalf("sixth attempt from the attacker: %s; want 429", known)
	}
	// The right password from the attacker's address is still refused
	// (the pair is throttled), from the owner's address it succeeds.
	if r := ts.loginFrom(t, attacker, "victor", "correct horse battery"); r.status != 429 {
		t.Fatalf("attacker's address with the right password: %d", r.status)
	}
	if r := ts.loginFrom(t, owner, "victor", "correct horse battery"); r.status != 200 {
		t.Fatalf("owner's address during the attack: %d %v", r.status, r.body)
	}
	// The attacker keeps going from many addresses (each within its own
	// limits) until the account's global ceiling: the owner's address,
	// where the account just signed in, is still let through.
	for i := range 30 {
		ts.loginFrom(t, fmt.Sprintf("203.0.113.%d", 100+i), "victor", "guess number two")
	}
	if r := ts.loginFrom(t, "192.0.2.99", "victor", "correct horse battery"); r.status != 429 {
		t.Fatalf("an address without a recent sign-in during a distributed attack: %d, want slowed (429)", r.status)
	}
	if r := ts.loginFrom(t, owner, "victor", "correct horse battery"); r.status != 200 {
		t.Fatalf("owner's address during a distributed attack: %d %v", r.status, r.body)
	}
	// A disabled account with the right password answers like a wrong one.
	r := ts.loginFrom(t, "192.0.2.7", "disabled-one", "whatever it is 7")
	u, _ := ts.accounts.CreateUser(context.Background(), nil, "dina", "correct horse battery", unhidra.RoleMember, auth.Request{})
	ts.accounts.SetDisabled(context.Background(), nil, u.ID, true, auth.Request{})
	r2 := ts.loginFrom(t, "192.0.2.7", "dina", "correct horse battery")
	if r.status != r2.status || fmt.Sprint(r.body) != fmt.Sprint(r2.body) {
		t.Fatalf("disabled account with the right password: %d %v; unknown name: %d %v", r2.status, r2.body, r.status, r.body)
	}
}

// TestLogin_FloodFairness: 200 concurrent sign-ins for unknown names from 8
// addresses overload the hasher (2 slots, a queue of 32: most of the flood
// is shed with 503); a victim's correct sign-in from a ninth address still
// succeeds within 2 s. With one FIFO queue the victim would find it full
// and get 503 at once. The hash costs 8 MiB and 2 passes rather than the
// production 48 MiB and 3, so that the bound holds on the shared, loaded
// CI machine too; the victim waits for at most one hash per address
// waiting ahead of it (see PasswordHasher).
func TestLogin_FloodFairness(t *testing.T) {
	ts := newDefaultsServer(t, auth.PasswordHasherConfig{MaxConcurrent: 2,
		Params: auth.PasswordParams{MemoryKiB: 8 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if _, err := ts.accounts.CreateUser(context.Background(), nil, "vera", "correct horse battery", unhidra.RoleMember, auth.Request{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	start := make(chan struct{})
	for i := range 200 {
		wg.Go(func() {
			<-start
			r := ts.loginFrom(t, fmt.Sprintf("203.0.113.%d", 1+i%8), fmt.Sprintf("ghost%d", i), "some guess or other")
			mu.Lock()
			counts[r.status]++
			mu.Unlock()
		})
	}
	close(start)
	time.Sleep(150 * time.Millisecond) // the flood fills the queue
	t0 := time.Now()
	r := ts.loginFrom(t, "198.51.100.9", "vera", "correct horse battery")
	took := time.Since(t0)
	wg.Wait()
	t.Logf("victim: %d in %v; flood statuses %v", r.status, took, counts)
	if r.status != 200 {
		t.Fatalf("victim's sign-in during the flood: %d %v", r.status, r.body)
	}
	// The bound is 2 s. Under the race detector (make test) every
	// hash and every SQLite write costs several times more, so the bound
	// is widened there; the victim must still succeed, never be shed.
	bound := 2 * time.Second
	if raceDetector {
		bound = 8 * time.Second
	}
	if took > bound {
		t.Fatalf("victim's sign-in took %v, want within %v", took, bound)
	}
	if counts[503] == 0 && counts[429] == 0 {
		t.Fatalf("the flood was never shed (%v): the test did not load the hasher", counts)
	}
}

// TestSessions_EndOverHTTP: sign out everywhere, a role change, a reset of
// a service account's password, and re-enabling, as the API sees them.
func TestSessions_EndOverHTTP(t *testing.T) {
	ts := newTestServer(t, auth.PasswordHasherConfig{})
	admin := ts.admin(t)
	tok, _, uid := ts.register(t, "wendy")
	r := ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "wendy", "password": "correct horse battery"})
	tok2 := r.body["access_token"].(string)
	if r := ts.do(t, "POST", "/api/v1/auth/logout-everywhere", tok, "", ""); r.status != 204 {
		t.Fatalf("logout-everywhere: %d %v", r.status, r.body)
	}
	for _, tk := range []string{tok, tok2} {
		if r := ts.do(t, "GET", "/api/v1/me", tk, "", ""); r.status != 401 {
			t.Fatalf("token after logout-everywhere: %d", r.status)
		}
	}
	r = ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "wendy", "password": "correct horse battery"})
	tok = r.body["access_token"].(string)
	if r := ts.json(t, "PUT", "/api/v1/admin/users/"+uid+"/role", admin, map[string]string{"role": "admin"}); r.status != 200 || r.body["user"].(map[string]any)["role"] != "admin" {
		t.Fatalf("role change: %d %v", r.status, r.body)
	}
	if r := ts.do(t, "GET", "/api/v1/me", tok, "", ""); r.status != 401 {
		t.Fatalf("token after a role change: %d", r.status)
	}
	if r := ts.json(t, "PUT", "/api/v1/admin/users/"+uid+"/role", admin, map[string]string{"role": "bot"}); r.status != 400 {
		t.Fatalf("role bot: %d", r.status)
	}
	r = ts.json(t, "POST", "/api/v1/admin/users", admin, map[string]string{"name": "helperbot", "role": "bot"})
	botID := r.body["user"].(map[string]any)["id"].(string)
	if r := ts.json(t, "PUT", "/api/v1/admin/users/"+botID+"/password", admin, map[string]string{"password": "correct horse battery"}); r.status != 400 {
		t.Fatalf("reset a bot's password: %d %v", r.status, r.body)
	}
	if r := ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "helperbot", "password": "correct horse battery"}); r.status != 401 {
		t.Fatalf("bot login: %d", r.status)
	}
	// Weak passwords are refused with the reason.
	r = ts.json(t, "POST", "/api/v1/auth/register", "", map[string]string{"name": "xavier", "password": "password"})
	if r.status != 400 || !strings.Contains(fmt.Sprint(r.body), "commonly used") {
		t.Fatalf("weak password: %d %v", r.status, r.body)
	}
	r = ts.json(t, "POST", "/api/v1/auth/register", "", map[string]string{"name": "r\u043e\u043et", "password": "correct horse battery"})
	if r.status != 400 && r.status != 409 {
		t.Fatalf("Cyrillic root beside root: %d %v", r.status, r.body)
	}
}

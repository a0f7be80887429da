package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/protocol"
)

type testServer struct {
	*httptest.Server
	db       *sqldb.DB
	accounts *auth.Service
	ready    bool
}

func newTestServer(t *testing.T, hasherCfg auth.PasswordHasherConfig) *testServer {
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
	lim := auth.Limits{LoginPerIP: ratelimit.Limit{Burst: 1000, Every: time.Millisecond},
		LoginPerAccount: ratelimit.Limit{Burst: 1000, Every: time.Millisecond},
		RegisterPerIP:   ratelimit.Limit{Burst: 1000, Every: time.Millisecond}}
	ts := &testServer{db: db, ready: true}
	ts.accounts = auth.NewService(db, hasher, &auth.Tokens{Keys: ks}, lim, nil)
	ts.Server = httptest.NewServer(api.NewServer(api.Deps{
		Accounts: ts.accounts, Store: db, Ready: func() bool { return ts.ready },
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics\n") }),
	}))
	t.Cleanup(ts.Close)
	return ts
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (r response) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (ts *testServer) do(t *testing.T, method, path, token, contentType string, body string) response {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header}
	if len(raw) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s: response is not JSON: %q", method, path, raw)
		}
	}
	return out
}

func (ts *testServer) json(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	b, _ := json.Marshal(body)
	return ts.do(t, method, path, token, "application/json", string(b))
}

func (ts *testServer) register(t *testing.T, name string) (token, refresh, id string) {
	t.Helper()
	r := ts.json(t, "POST", "/api/v1/auth/register", "", map[string]string{"name": name, "password": "correct horse battery"})
	if r.status != http.StatusCreated {
		t.Fatalf("register %s: %d %v", name, r.status, r.body)
	}
	u := r.body["user"].(map[string]any)
	return r.body["access_token"].(string), r.body["refresh_token"].(string), u["id"].(string)
}

func (ts *testServer) admin(t *testing.T) string {
	t.Helper()
	if _, err := ts.accounts.CreateUser(context.Background(), nil, "root", "correct horse battery", unhidra.RoleAdmin, auth.Request{}); err != nil {
		t.Fatal(err)
	}
	r := ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "root", "password": "correct horse battery"})
	if r.status != 200 {
		t.Fatalf("admin login: %d %v", r.status, r.body)
	}
	return r.body["access_token"].(string)
}

func TestAuthFlow(t *testing.T) {
	ts := newTestServer(t, auth.PasswordHasherConfig{})
	token, refresh, _ := ts.register(t, "alice")

	r := ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "alice", "password": "correct horse battery"})
	if r.status != 200 || r.body["token_type"] != "Bearer" || r.body["expires_in"].(float64) != 900 {
		t.Fatalf("login: %d %v", r.status, r.body)
	}
	if u := r.body["user"].(map[string]any); u["name"] != "alice" || u["password_hash"] != nil {
		t.Fatalf("login user = %v (hash must never be sent)", u)
	}
	if me := ts.do(t, "GET", "/api/v1/me", token, "", ""); me.status != 200 || me.body["user"].(map[string]any)["name"] != "alice" {
		t.Fatalf("me: %d %v", me.status, me.body)
	}
	r = ts.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": refresh})
	if r.status != 200 || r.body["refresh_token"] == refresh {
		t.Fatalf("refresh: %d %v", r.status, r.body)
	}
	newRefresh := r.body["refresh_token"].(string)
	if r := ts.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}); r.status != 401 {
		t.Fatalf("reuse: %d", r.status)
	}
	if r := ts.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": newRefresh}); r.status != 401 {
		t.Fatalf("family not revoked after reuse: %d", r.status)
	}
	r = ts.json(t, "PUT", "/api/v1/me/password", token, map[string]string{"current_password": "correct horse battery", "new_password": "brand new secret"})
	if r.status != 200 {
		t.Fatalf("password change: %d %v", r.status, r.body)
	}
	newer := r.body["refresh_token"].(string)
	if r := ts.json(t, "POST", "/api/v1/auth/logout", r.body["access_token"].(string), map[string]string{"refresh_token": newer}); r.status != 204 {
		t.Fatalf("logout: %d %v", r.status, r.body)
	}
	if r := ts.json(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": newer}); r.status != 401 {
		t.Fatalf("refresh after logout: %d", r.status)
	}
}

func TestErrors(t *testing.T) {
	ts := newTestServer(t, auth.PasswordHasherConfig{})
	token, _, _ := ts.register(t, "bob")
	cases := []struct {
		name, method, path, token, ctype, body string
		status                                 int
		code                                   string
	}{
		{"malformed JSON", "POST", "/api/v1/auth/login", "", "application/json", `{"name":`, 400, protocol.ErrInvalid},
		{"unknown field", "POST", "/api/v1/auth/login", "", "application/json", `{"name":"bob","password":"x","admin":true}`, 400, protocol.ErrInvalid},
		{"trailing data", "POST", "/api/v1/auth/login", "", "application/json", `{"name":"bob","password":"x"}{}`, 400, protocol.ErrInvalid},
		{"wrong type", "POST", "/api/v1/auth/login", "", "application/json", `{"name":1,"password":"x"}`, 400, protocol.ErrInvalid},
		{"empty body", "POST", "/api/v1/auth/login", "", "application/json", ``, 400, protocol.ErrInvalid},
		{"missing fields", "POST", "/api/v1/auth/login", "", "application/json", `{}`, 400, protocol.ErrInvalid},
		{"array body", "POST", "/api/v1/auth/login", "", "application/json", `[]`, 400, protocol.ErrInvalid},
		{"no content type", "POST", "/api/v1/auth/login", "", "", `{"name":"bob","password":"x"}`, 415, protocol.ErrUnsupported},
		{"form content type", "POST", "/api/v1/auth/login", "", "application/x-www-form-urlencoded", `name=bob`, 415, protocol.ErrUnsupported},
		{"too large", "POST", "/api/v1/auth/login", "", "application/json", `{"name":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, 413, protocol.ErrTooLarge},
		{"bad password", "POST", "/api/v1/auth/login", "", "application/json", `{"name":"bob","password":"wrong wrong"}`, 401, protocol.ErrUnauthorized},
		{"no token", "GET", "/api/v1/me", "", "", ``, 401, protocol.ErrUnauthorized},
		{"garbage token", "GET", "/api/v1/me", "garbage", "", ``, 401, protocol.ErrUnauthorized},
		{"token in query", "GET", "/api/v1/me?access_token=" + token, "", "", ``, 400, protocol.ErrInvalid},
		{"not admin", "GET", "/api/v1/admin/users", token, "", ``, 403, protocol.ErrForbidden},
		{"no route", "GET", "/api/v1/nope", "", "", ``, 404, protocol.ErrNotFound},
		{"duplicate", "POST", "/api/v1/auth/register", "", "application/json", `{"name":"BOB","password":"correct horse battery"}`, 409, protocol.ErrConflict},
		{"weak password", "POST", "/api/v1/auth/register", "", "application/json", `{"name":"carl","password":"short"}`, 400, protocol.ErrInvalid},
		{"invalid utf8 name", "POST", "/api/v1/auth/register", "", "application/json", "{\"name\":\"\xff\xfe\",\"password\":\"correct horse battery\"}", 400, protocol.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ts.do(t, c.method, c.path, c.token, c.ctype, c.body)
			if r.status != c.status || r.errCode() != c.code {
				t.Fatalf("%s %s = %d %q %v, want %d %q", c.method, c.path, r.status, r.errCode(), r.body, c.status, c.code)
			}
			if msg := r.body["error"].(map[string]any)["message"].(string); msg == "" || strings.Contains(msg, token) {
				t.Fatalf("error message %q empty or leaks the token", msg)
			}
		})
	}
	if r := ts.do(t, "GET", "/api/v1/me", "garbage", "", ""); !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatal("401 without WWW-Authenticate")
	}
}

func TestLoginBurstGets503(t *testing.T) {
	// Real parameters, one slot, nobody waits: a burst must be shed with
	// 503 + Retry-After instead of queueing unbounded 48 MiB hashes.
	ts := newTestServer(t, auth.PasswordHasherConfig{Params: auth.DefaultPasswordParams(), MaxConcurrent: 1, MaxQueue: -1})
	if _, err := ts.accounts.CreateUser(context.Background(), nil, "dora", "correct horse battery", unhidra.RoleMember, auth.Request{}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	statuses := make([]response, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "dora", "password": "correct horse battery"})
		}()
	}
	close(start)
	wg.Wait()
	ok, shed := 0, 0
	for _, r := range statuses {
		switch r.status {
		case 200:
			ok++
		case 503:
			shed++
			if r.header.Get("Retry-After") == "" || r.errCode() != protocol.ErrUnavailable {
				t.Fatalf("503 without Retry-After or code: %v %v", r.header, r.body)
			}
		default:
			t.Fatalf("unexpected status %d %v", r.status, r.body)
		}
	}
	if ok == 0 || shed == 0 {
		t.Fatalf("burst: %d ok, %d shed; want both", ok, shed)
	}
}

func TestAdmin(t *testing.T) {
	ts := newTestServer(t, auth.PasswordHasherConfig{})
	admin := ts.admin(t)
	userTok, _, uid := ts.register(t, "erin")

	r := ts.do(t, "GET", "/api/v1/admin/users?limit=10", admin, "", "")
	if r.status != 200 || len(r.body["users"].([]any)) != 2 {
		t.Fatalf("list users: %d %v", r.status, r.body)
	}
	if r := ts.do(t, "GET", "/api/v1/admin/users?limit=0", admin, "", ""); r.status != 400 {
		t.Fatalf("bad limit: %d", r.status)
	}
	r = ts.json(t, "POST", "/api/v1/admin/users", admin, map[string]string{"name": "bot1", "role": "bot"})
	if r.status != 201 || r.body["user"].(map[string]any)["role"] != "bot" {
		t.Fatalf("create user: %d %v", r.status, r.body)
	}
	if r := ts.do(t, "POST", "/api/v1/admin/users/"+uid+"/disable", admin, "", ""); r.status != 200 {
		t.Fatalf("disable: %d %v", r.status, r.body)
	}
	if r := ts.do(t, "GET", "/api/v1/me", userTok, "", ""); r.status != 401 {
		t.Fatalf("disabled user still authenticated: %d", r.status)
	}
	if r := ts.do(t, "POST", "/api/v1/admin/users/usr_nope/disable", admin, "", ""); r.status != 404 {
		t.Fatalf("disable unknown: %d", r.status)
	}
	if r := ts.do(t, "POST", "/api/v1/admin/users/"+uid+"/enable", admin, "", ""); r.status != 200 {
		t.Fatalf("enable: %d", r.status)
	}
	if r := ts.json(t, "PUT", "/api/v1/admin/users/"+uid+"/password", admin, map[string]string{"password": "reset by admin!"}); r.status != 204 {
		t.Fatalf("reset password: %d %v", r.status, r.body)
	}
	if r := ts.json(t, "POST", "/api/v1/auth/login", "", map[string]string{"name": "erin", "password": "reset by admin!"}); r.status != 200 {
		t.Fatalf("login after reset: %d", r.status)
	}

	r = ts.do(t, "GET", "/api/v1/admin/audit?action=user.", admin, "", "")
	if r.status != 200 {
		t.Fatalf("audit: %d %v", r.status, r.body)
	}
	actions := map[string]bool{}
	for _, e := range r.body["events"].([]any) {
		actions[e.(map[string]any)["action"].(string)] = true
	}
	for _, want := range []string{unhidra.AuditUserRegistered, unhidra.AuditUserCreated, unhidra.AuditUserDisabled, unhidra.AuditUserEnabled} {
		if !actions[want] {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}
	if r := ts.do(t, "GET", "/api/v1/admin/audit?since=yesterday", admin, "", ""); r.status != 400 {
		t.Fatalf("bad since: %d", r.status)
	}
	r = ts.do(t, "GET", "/api/v1/admin/audit?action=login.failure", admin, "", "")
	for _, e := range r.body["events"].([]any) {
		if strings.Contains(e.(map[string]any)["detail"].(string), "password") && strings.Contains(e.(map[string]any)["detail"].(string), "correct") {
			t.Fatal("a password reached the audit log")
		}
	}

	before := ts.do(t, "GET", "/.well-known/jwks.json", "", "", "")
	r = ts.do(t, "POST", "/api/v1/admin/signing-keys/rotate", admin, "", "")
	if r.status != 200 || r.body["active_kid"] == "" {
		t.Fatalf("rotate: %d %v", r.status, r.body)
	}
	after := ts.do(t, "GET", "/.well-known/jwks.json", "", "", "")
	if len(after.body["keys"].([]any)) != len(before.body["keys"].([]any))+1 {
		t.Fatalf("JWKS after rotation: %v", after.body)
	}
	if r := ts.do(t, "GET", "/api/v1/me", admin, "", ""); r.status != 200 {
		t.Fatalf("token from before the rotation stopped working: %d", r.status)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	ts := newTestServer(t, auth.PasswordHasherConfig{})
	if r := ts.do(t, "GET", "/healthz", "", "", ""); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
	if r := ts.do(t, "GET", "/readyz", "", "", ""); r.status != 200 {
		t.Fatalf("readyz: %d", r.status)
	}
	ts.ready = false
	if r := ts.do(t, "GET", "/readyz", "", "", ""); r.status != 503 {
		t.Fatalf("readyz while draining: %d", r.status)
	}
	// Loopback clients may read metrics (httptest listens on loopback).
	if r := ts.do(t, "GET", "/metrics", "", "", ""); r.status != 200 {
		t.Fatalf("metrics from loopback: %d", r.status)
	}
	res, _ := http.Get(ts.URL + "/healthz")
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatal("security headers missing")
	}
	res.Body.Close()
}

func TestClientIP(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.5:1234"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, 10.0.0.4")
	if got := api.ClientIP(r, nil); got != "10.0.0.5" {
		t.Fatalf("untrusted proxy: %s", got)
	}
	trusted := mustPrefixes(t, "10.0.0.0/8", "127.0.0.0/8")
	for _, c := range []struct {
		name string
		peer string
		xff  []string
		fwd  []string
		want string
	}{
		{"chain", "10.0.0.5:1", []string{"203.0.113.9, 10.0.0.4"}, nil, "203.0.113.9"},
		// The client's own line first, the proxy's appended line second.
		{"two lines", "10.0.0.5:1", []string{"127.0.0.1", "203.0.113.9"}, nil, "203.0.113.9"},
		{"two lines, spoofed chain first", "10.0.0.5:1", []string{"198.51.100.1, 127.0.0.1", "203.0.113.9"}, nil, "203.0.113.9"},
		{"garbage", "10.0.0.5:1", []string{"garbage"}, nil, api.UnknownClient},
		{"garbage last hop", "127.0.0.1:1", []string{"203.0.113.9, not-an-ip"}, nil, api.UnknownClient},
		{"empty last hop", "127.0.0.1:1", []string{"203.0.113.9,"}, nil, api.UnknownClient},
		{"garbage before the client", "10.0.0.5:1", []string{"junk, 203.0.113.9"}, nil, "203.0.113.9"},
		{"only proxies", "10.0.0.5:1", []string{"10.0.0.9, 10.0.0.4"}, nil, "10.0.0.9"},
		{"unspecified", "10.0.0.5:1", []string{"0.0.0.0"}, nil, api.UnknownClient},
		{"mapped", "10.0.0.5:1", []string{"::ffff:203.0.113.9"}, nil, "203.0.113.9"},
		{"with port", "10.0.0.5:1", []string{"203.0.113.9:5555"}, nil, "203.0.113.9"},
		{"forwarded", "10.0.0.5:1", nil, []string{`for=198.51.100.7;proto=https, for="[2001:db8::1]:4711"`}, "2001:db8::1"},
		{"forwarded two lines", "10.0.0.5:1", nil, []string{`for=127.0.0.1`, `for=198.51.100.7`}, "198.51.100.7"},
		{"forwarded obfuscated", "10.0.0.5:1", nil, []string{`for=_hidden`}, api.UnknownClient},
		{"forwarded unknown", "10.0.0.5:1", nil, []string{`for=unknown`}, api.UnknownClient},
		{"forwarded without for", "10.0.0.5:1", nil, []string{`proto=https`}, api.UnknownClient},
		{"headers agree", "10.0.0.5:1", []string{"198.51.100.7"}, []string{"for=198.51.100.7"}, "198.51.100.7"},
		{"headers disagree", "10.0.0.5:1", []string{"198.51.100.7"}, []string{"for=198.51.100.8"}, api.UnknownClient},
		{"no header", "10.0.0.5:1", nil, nil, "10.0.0.5"},
		{"untrusted peer ignores headers", "198.51.100.2:1", []string{"127.0.0.1"}, nil, "198.51.100.2"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, l := range c.xff {
			r.Header.Add("X-Forwarded-For", l)
		}
		for _, l := range c.fwd {
			r.Header.Add("Forwarded", l)
		}
		if got := api.ClientIP(r, trusted); got != c.want {
			t.Errorf("%s: ClientIP = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestDirectLoopback(t *testing.T) {
	for _, c := range []struct {
		peer, header string
		want         bool
	}{
		{"127.0.0.1:5", "", true},
		{"[::1]:5", "", true},
		{"127.0.0.1:5", "X-Forwarded-For", false},
		{"127.0.0.1:5", "Forwarded", false},
		{"10.1.1.1:5", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.header != "" {
			r.Header.Set(c.header, "127.0.0.1")
		}
		if got := api.DirectLoopback(r); got != c.want {
			t.Errorf("%s with %q: %v", c.peer, c.header, got)
		}
	}
}

// FuzzClientIP: whatever a client puts in the forwarding headers behind a
// trusted loopback proxy, the result is never a loopback or proxy address
// it did not get from a parsable hop, and never panics.
func FuzzClientIP(f *testing.F) {
	trusted := mustPrefixes(f, "127.0.0.0/8")
	f.Add("1.2.3.4, x", "for=1.2.3.4")
	f.Add("", `for="[::1]:80"`)
	f.Fuzz(func(t *testing.T, xff, fwd string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:9"
		r.Header["X-Forwarded-For"] = []string{xff}
		r.Header["Forwarded"] = []string{fwd}
		got := api.ClientIP(r, trusted)
		if got == "127.0.0.1" && !strings.Contains(xff+fwd, "127.0.0.1") {
			t.Fatalf("the proxy's own address came out of %q / %q", xff, fwd)
		}
	})
}

func FuzzDecodeLogin(f *testing.F) {
	ts := newTestServerForFuzz(f)
	f.Add([]byte(`{"name":"a","password":"b"}`))
	f.Add([]byte(`{"name":"\u0000"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := http.Post(ts.URL+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode >= 500 && res.StatusCode != 503 {
			t.Fatalf("status %d for %q", res.StatusCode, body)
		}
		var out map[string]any
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatalf("non-JSON response for %q", body)
		}
	})
}

package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestRequestID: every response carries an id, a client's well-formed id
// is kept, a hostile one is replaced, and the log line of the request
// names the same id.
func TestRequestID(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hasher, _ := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	var logs lockedBuf
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(api.NewServer(api.Deps{Log: log, Store: db,
		Accounts: auth.NewService(db, hasher, &auth.Tokens{Keys: ks}, auth.Limits{}, log)}))
	t.Cleanup(srv.Close)

	get := func(path, id string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("X-Request-Id")
	}
	fresh := get("/api/v1/me", "")
	if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(fresh) {
		t.Fatalf("generated id %q", fresh)
	}
	if again := get("/api/v1/me", ""); again == fresh {
		t.Fatal("two requests got the same id")
	}
	if got := get("/healthz", "lb-4711.a_b"); got != "lb-4711.a_b" {
		t.Fatalf("client id not kept: %q", got)
	}
	for _, bad := range []string{"a b", "x\"}{\"level\":\"ERROR", strings.Repeat("a", 65), "ünicode"} {
		if got := get("/healthz", bad); got == bad || len(got) != 24 {
			t.Fatalf("hostile id %q answered with %q", bad, got)
		}
	}
	for _, id := range []string{fresh, "lb-4711.a_b"} {
		if !strings.Contains(logs.String(), `"request_id":"`+id+`"`) {
			t.Fatalf("request id %s not in the log:\n%s", id, logs.String())
		}
	}
}

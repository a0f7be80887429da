package api_test

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

func mustPrefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// newTestServerForFuzz builds a server once per fuzz run.
func newTestServerForFuzz(f *testing.F) *httptest.Server {
	db, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	hasher, _ := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	srv := httptest.NewServer(api.NewServer(api.Deps{Accounts: auth.NewService(db, hasher, &auth.Tokens{Keys: ks}, auth.Limits{}, nil), Store: db}))
	f.Cleanup(srv.Close)
	return srv
}

package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

func TestMetrics_LoginsByResult(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hasher, _ := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	accounts := auth.NewService(db, hasher, &auth.Tokens{Keys: ks}, auth.Limits{}, nil)
	if _, err := accounts.CreateUser(context.Background(), nil, "carol", "correct horse battery", unhidra.RoleMember, auth.Request{IP: "cli"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Deps{Accounts: accounts, Store: db, Registerer: reg}))
	t.Cleanup(srv.Close)
	login := func(body string) {
		res, err := http.Post(srv.URL+"/api/v1/auth/login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	login(`{"name":"carol","password":"correct horse battery"}`)
	login(`{"name":"carol","password":"wrong wrong wrong"}`)
	login(`{"name":"nobody","password":"wrong wrong wrong"}`)
	login(`{"name":""}`)
	want := `
# HELP unhidra_api_logins_total Password logins by result (bad_credentials: wrong name or password).
# TYPE unhidra_api_logins_total counter
unhidra_api_logins_total{result="bad_credentials"} 2
unhidra_api_logins_total{result="error"} 0
unhidra_api_logins_total{result="invalid"} 1
unhidra_api_logins_total{result="locked"} 0
unhidra_api_logins_total{result="ok"} 1
unhidra_api_logins_total{result="rate_limited"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "unhidra_api_logins_total"); err != nil {
		t.Fatal(err)
	}
}

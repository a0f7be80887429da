// Package testenv gives tests the real services they need (PostgreSQL,
// NATS) in isolation, and fails them loudly when a service is missing:
// a test that needs PostgreSQL never silently skips in CI.
//
// UNHIDRA_TEST_POSTGRES and UNHIDRA_TEST_NATS override the default
// addresses (the ones .ci/run starts); setting either to "off" skips the
// tests that need it, on a developer machine that has no such service.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for schema set-up
)

// DefaultPostgres is the server .ci/run and the README's test command use.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresDSN returns a DSN for a fresh, empty schema on the test server,
// dropped when the test ends. It fails the test if the server is unreachable.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := serviceAddr(tb, "UNHIDRA_TEST_POSTGRES", DefaultPostgres, "PostgreSQL")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("PostgreSQL: bad DSN %q: %v", redact(base), err)
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		tb.Fatalf("PostgreSQL is required at %s and did not answer: %v (start it, or run `make setup`)", redact(base), err)
	}
	schema := "t_" + randomHex(8)
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		tb.Fatalf("create test schema: %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			tb.Logf("drop test schema %s: %v", schema, err)
		}
	})
	return withParam(base, "search_path", schema)
}

func withParam(dsn, key, value string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return strings.TrimSpace(dsn) + " " + key + "=" + value
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
		}
		return u.String()
	}
	return dsn
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// serviceAddr reads a test service's address from the environment: the
// default when unset, a skip only when explicitly "off".
func serviceAddr(tb testing.TB, env, def, what string) string {
	tb.Helper()
	switch v := os.Getenv(env); v {
	case "off":
		tb.Skipf("%s=off: %s tests skipped by request", env, what)
	case "":
		return def
	default:
		return v
	}
	return ""
}

// DefaultNATS is the server .ci/run and the README's test command use.
const DefaultNATS = "nats://127.0.0.1:4222"

// NATSURL returns the test NATS server's URL after checking that it
// answers; it fails the test if not.
func NATSURL(tb testing.TB) string {
	tb.Helper()
	u := serviceAddr(tb, "UNHIDRA_TEST_NATS", DefaultNATS, "NATS")
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		tb.Fatalf("NATS: bad URL %q", redact(u))
	}
	conn, err := net.DialTimeout("tcp", parsed.Host, 5*time.Second)
	if err != nil {
		tb.Fatalf("NATS is required at %s and did not answer: %v (start it, or run `make setup`)", redact(u), err)
	}
	conn.Close()
	return u
}

// UniqueName returns a name no other test run uses (bus prefixes, schemas).
func UniqueName(prefix string) string { return prefix + randomHex(6) }

package sqldb_test

import (
	"context"
	"database/sql"

	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/postgres"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/internal/testenv"
)

// seedPrevious applies the previous release's migrations (testdata) to db
// with dialect d and fills them with data.sql.
func seedPrevious(t *testing.T, db *sql.DB, d sqldb.Dialect, dir string) {
	t.Helper()
	d.Migrations = os.DirFS(filepath.Join("testdata/prev-release", dir))
	old := sqldb.New(db, db, d)
	n, err := old.Migrate(context.Background())
	if err != nil {
		t.Fatalf("previous release's migrations: %v", err)
	}
	if n != 4 {
		t.Fatalf("applied %d previous migrations, want 4", n)
	}
	data, err := os.ReadFile("testdata/prev-release/data.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range strings.Split(string(data), ";\n") {
		if strings.TrimSpace(stmt) == "" || strings.HasPrefix(strings.TrimSpace(stmt), "--") && !strings.Contains(stmt, "INSERT") {
			continue
		}
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// checkUpgraded: every current migration is applied and the old data reads
// back through today's store.
func checkUpgraded(t *testing.T, db *sqldb.DB, current fs.FS) {
	t.Helper()
	ctx := context.Background()
	names, _ := fs.Glob(current, "*.sql")
	if len(names) <= 4 {
		t.Logf("no migration newer than the previous release yet (%d)", len(names))
	}
	// Migrate reports the schema version: today's newest migration.
	if n, err := db.Migrate(ctx); err != nil || n != len(names) {
		t.Fatalf("schema version after open: %d %v, want %d", n, err, len(names))
	}
	u, err := db.UserByName(ctx, "ann")
	if err != nil || u.ID != "u_ann" || u.DisplayName != "Ann" || !u.IsAdmin() {
		t.Fatalf("user ann after the upgrade: %+v %v", u, err)
	}
	c, err := db.ConversationByID(ctx, "c_ops")
	if err != nil || c.LastSeq != 2 || c.Name != "ops" {
		t.Fatalf("channel after the upgrade: %+v %v", c, err)
	}
	msgs, _, err := db.History(ctx, store.HistoryQuery{ConversationID: "c_ops", Forward: true, Limit: 10})
	if err != nil || len(msgs) != 2 || msgs[0].Body != "before the upgrade" || msgs[1].SenderID != "u_bob" {
		t.Fatalf("history after the upgrade: %v %v", msgs, err)
	}
	d, err := db.DeviceByID(ctx, "d_boiler")
	if err != nil || d.OwnerID != "u_ann" || d.Name != "boiler" {
		t.Fatalf("device after the upgrade: %+v %v", d, err)
	}
}

// TestUpgradeFromPreviousRelease_SQLite starts from the previous release's
// schema with data and opens it with today's code.
func TestUpgradeFromPreviousRelease_SQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unhidra.db")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(ON)")
	if err != nil {
		t.Fatal(err)
	}
	seedPrevious(t, raw, sqlite.Dialect(), "sqlite")
	raw.Close()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open with today's migrations: %v", err)
	}
	defer db.Close()
	checkUpgraded(t, db, sqlite.Dialect().Migrations)
}

// TestUpgradeFromPreviousRelease_Postgres does the same on PostgreSQL, then
// takes the upgraded database through pg_dump and pg_restore into a new
// database and reads it back (the backup procedure of docs/operations.md).
func TestUpgradeFromPreviousRelease_Postgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	seedPrevious(t, raw, postgres.Dialect(), "postgres")
	raw.Close()
	db, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open with today's migrations: %v", err)
	}
	checkUpgraded(t, db, postgres.Dialect().Migrations)
	db.Close()

	// pg_dump of the schema, pg_restore into a database of its own.
	for _, tool := range []string{"pg_dump", "pg_restore", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (it comes with PostgreSQL's client package): %v", tool, err)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	schema := q.Get("search_path")
	q.Del("search_path")
	u.RawQuery = q.Encode()
	dump := filepath.Join(t.TempDir(), "unhidra.dump")
	if out, err := exec.Command("pg_dump", "--format=custom", "--no-owner", "--schema="+schema, "--file="+dump, u.String()).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	target := testenv.UniqueName("unhidra_restore_")
	if out, err := exec.Command("psql", "-q", "-v", "ON_ERROR_STOP=1", u.String(), "-c", "CREATE DATABASE "+target).CombinedOutput(); err != nil {
		t.Fatalf("create database: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("psql", "-q", u.String(), "-c", "DROP DATABASE IF EXISTS "+target+" WITH (FORCE)").Run()
	})
	tu := *u
	tu.Path = "/" + target
	if out, err := exec.Command("pg_restore", "--no-owner", "--exit-on-error", "--dbname="+tu.String(), dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	tq := tu.Query()
	tq.Set("search_path", schema)
	tu.RawQuery = tq.Encode()
	restored, err := postgres.Open(context.Background(), tu.String())
	if err != nil {
		t.Fatalf("open the restored database: %v", err)
	}
	defer restored.Close()
	checkUpgraded(t, restored, postgres.Dialect().Migrations)
}

package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Dialect is what differs between the SQL databases we support.
type Dialect struct {
	// Name is "sqlite" or "postgres".
	Name string
	// Rebind turns a query written with '?' placeholders into the
	// database's own form. Nil means '?' is native.
	Rebind func(query string) string
	// IsUniqueViolation reports whether err is a UNIQUE/PRIMARY KEY violation.
	IsUniqueViolation func(err error) bool
	// Migrations holds NNNN_name.sql files, applied in order, one
	// transaction each.
	Migrations fs.FS
	// LockMigrations, when set, runs inside the migration transaction first
	// so that nodes starting together do not race (PostgreSQL advisory lock).
	LockMigrations func(ctx context.Context, tx *sql.Tx) error
	// CacheStatements keeps queries run outside transactions prepared
	// (SQLite, where compiling the SQL is a large part of a short query).
	CacheStatements bool
}

// DB implements store.Store on a database/sql handle.
type DB struct {
	// write is used for every transaction that writes; read for queries.
	// SQLite needs the split (one writer; readers in parallel under WAL);
	// on PostgreSQL both are the same pool.
	write, read *pool
	dialect     Dialect

	// Now is the clock; tests replace it. Defaults to time.Now.
	Now func() time.Time
}

var _ store.Store = (*DB)(nil)

// New wraps the handles in a DB. The caller has opened them; Close closes both.
// With d.CacheStatements, queries outside transactions reuse prepared
// statements.
func New(write, read *sql.DB, d Dialect) *DB {
	db := &DB{dialect: d, Now: time.Now}
	db.write = newPool(write, d.CacheStatements)
	db.read = db.write
	if read != write {
		db.read = newPool(read, d.CacheStatements)
	}
	return db
}

// Dialect returns the dialect's name ("sqlite" or "postgres").
func (db *DB) Dialect() string { return db.dialect.Name }

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", db.dialect.Name, err)
	}
	return nil
}

// Close closes the database handles.
func (db *DB) Close() error {
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// now returns the current time in UTC, truncated to milliseconds (what the
// database keeps), so values read back compare equal to values written.
func (db *DB) now() time.Time { return db.Now().UTC().Truncate(time.Millisecond) }

// q rebinds a '?' query for the dialect.
func (db *DB) q(query string) string {
	if db.dialect.Rebind == nil {
		return query
	}
	return db.dialect.Rebind(query)
}

// formatError maps driver errors to application errors: a unique
// violation becomes protocol.ErrConflict with msg, no rows becomes protocol.ErrNotFound.
func (db *DB) formatError(err error, conflictMsg string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return unhidra.Errorf(protocol.ErrNotFound, "Not found.")
	case db.dialect.IsUniqueViolation != nil && db.dialect.IsUniqueViolation(err):
		e := unhidra.Errorf(protocol.ErrConflict, "%s", conflictMsg)
		e.Err = err
		return e
	}
	return err
}

// inTx runs fn in a write transaction, committing when it returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Migrate applies the dialect's migrations that are not applied yet and
// returns the resulting schema version.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	names, err := fs.Glob(db.dialect.Migrations, "*.sql")
	if err != nil {
		return 0, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	version := 0
	for _, name := range names {
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil || v <= 0 {
			return 0, fmt.Errorf("migration %q: name must start with a positive number", name)
		}
		body, err := fs.ReadFile(db.dialect.Migrations, name)
		if err != nil {
			return 0, fmt.Errorf("read migration %s: %w", name, err)
		}
		err = db.inTx(ctx, func(tx *sql.Tx) error {
			if db.dialect.LockMigrations != nil {
				if err := db.dialect.LockMigrations(ctx, tx); err != nil {
					return fmt.Errorf("lock migrations: %w", err)
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), v).Scan(&n); err != nil {
				return fmt.Errorf("check migration %d: %w", v, err)
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("apply migration %s: %w", name, err)
			}
			_, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
				v, name, db.now().UnixMilli())
			return err
		})
		if err != nil {
			return 0, err
		}
		version = v
	}
	return version, nil
}

// RebindDollar rewrites '?' placeholders as $1, $2, … (PostgreSQL). Our
// queries never contain a literal '?', so no quoting rules are needed.
func RebindDollar(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

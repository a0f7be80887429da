// Package postgres opens the multi-node store: PostgreSQL through pgx's
// database/sql driver, with the PostgreSQL migrations, on the shared SQL
// implementation in store/sqldb.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/unhidra/unhidra/internal/store/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockID is an arbitrary constant naming our advisory lock.
const migrationLockID = 0x756e6869 // "unhi"

// Dialect is PostgreSQL's flavour of SQL for sqldb.
func Dialect() sqldb.Dialect {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sqldb.Dialect{
		Name:              "postgres",
		Rebind:            sqldb.RebindDollar,
		IsUniqueViolation: isUniqueViolation,
		Migrations:        sub,
		LockMigrations: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID)
			return err
		},
	}
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string), applies the migrations and returns the store.
func Open(ctx context.Context, dsn string) (*sqldb.DB, error) {
	pool, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	pool.SetMaxOpenConns(max(8, 4*runtime.GOMAXPROCS(0)))
	pool.SetMaxIdleConns(max(8, 4*runtime.GOMAXPROCS(0)))
	pool.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.PingContext(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	db := sqldb.New(pool, pool, Dialect())
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate postgres: %w", err)
	}
	return db, nil
}

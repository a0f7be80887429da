package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxCachedStatements bounds the statement cache: queries are constants of
// this package, but a few are assembled with a variable number of
// placeholders, so the set is finite yet not tiny.
const maxCachedStatements = 256

// pool is a *sql.DB whose queries outside transactions reuse prepared
// statements. SQLite spends a large share of a short query compiling the SQL
// (profiled on the WebSocket connect path: about a third of each query), and
// database/sql prepares again for every call unless given a *sql.Stmt. The
// cache keys on the query text; database/sql prepares a statement on each
// pooled connection the first time it runs there and drops it with the
// connection. With caching off (PostgreSQL: pgx keeps its own statement
// cache) every call goes straight to the *sql.DB.
type pool struct {
	*sql.DB
	cache bool

	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

func newPool(db *sql.DB, cache bool) *pool {
	return &pool{DB: db, cache: cache, stmts: make(map[string]*sql.Stmt)}
}

// stmt returns the cached statement for query, preparing it on first use;
// nil when caching is off, the cache is full or preparing failed (the caller
// then runs the query unprepared, which reports any error itself).
func (p *pool) stmt(ctx context.Context, query string) *sql.Stmt {
	if !p.cache {
		return nil
	}
	p.mu.RLock()
	st := p.stmts[query]
	n := len(p.stmts)
	p.mu.RUnlock()
	if st != nil || n >= maxCachedStatements {
		return st
	}
	st, err := p.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.stmts[query]; old != nil {
		st.Close()
		return old
	}
	if len(p.stmts) >= maxCachedStatements {
		st.Close()
		return nil
	}
	p.stmts[query] = st
	return st
}

// QueryContext runs a query with the cached statement when there is one.
func (p *pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a one-row query with the cached statement when there is one.
func (p *pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.DB.QueryRowContext(ctx, query, args...)
}

// ExecContext runs a statement with the cached statement when there is one.
func (p *pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.DB.ExecContext(ctx, query, args...)
}

// Close closes the cached statements, then the database handle.
func (p *pool) Close() error {
	p.mu.Lock()
	var errs []error
	for q, st := range p.stmts {
		errs = append(errs, st.Close())
		delete(p.stmts, q)
	}
	p.mu.Unlock()
	return errors.Join(append(errs, p.DB.Close())...)
}

package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

const tokenColumns = `hash, family_id, user_id, created_at, expires_at, used_at, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (*store.RefreshToken, error) {
	var t store.RefreshToken
	var created, expires, used, revoked int64
	if err := row.Scan(&t.Hash, &t.FamilyID, &t.UserID, &created, &expires, &used, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt = store.FromUnixMilli(created)
	t.ExpiresAt = store.FromUnixMilli(expires)
	t.UsedAt = store.FromUnixMilli(used)
	t.RevokedAt = store.FromUnixMilli(revoked)
	return &t, nil
}

func (db *DB) insertToken(ctx context.Context, tx *sql.Tx, t *store.RefreshToken) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.now()
	}
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO refresh_tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, 0, 0)`),
		t.Hash, t.FamilyID, t.UserID, t.CreatedAt.UnixMilli(), t.ExpiresAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert refresh token: %w", db.formatError(err, "Duplicate token."))
	}
	return nil
}

// CreateRefreshToken stores t. Returns protocol.ErrConflict on a duplicate hash.
func (db *DB) CreateRefreshToken(ctx context.Context, t *store.RefreshToken) error {
	return db.inTx(ctx, func(tx *sql.Tx) error { return db.insertToken(ctx, tx, t) })
}

// RotateRefreshToken marks oldHash used and stores next in its family, in
// one transaction. See store.TokenStore for the error contract.
func (db *DB) RotateRefreshToken(ctx context.Context, oldHash string, next *store.RefreshToken) (*store.RefreshToken, error) {
	var old *store.RefreshToken
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		old, err = scanToken(tx.QueryRowContext(ctx, db.q(`SELECT `+tokenColumns+` FROM refresh_tokens WHERE hash = ?`), oldHash))
		if err != nil {
			return db.notFound(err, "refresh token")
		}
		now := db.now()
		switch {
		case !old.RevokedAt.IsZero() || !now.Before(old.ExpiresAt):
			return unhidra.Errorf(protocol.ErrNotFound, "No such refresh token.")
		case !old.UsedAt.IsZero():
			return unhidra.Errorf(protocol.ErrConflict, "Refresh token reused.")
		}
		// The conditional update makes two concurrent rotations of the same
		// token resolve to one winner and one reuse.
		res, err := tx.ExecContext(ctx, db.q(`UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at = 0`),
			now.UnixMilli(), oldHash)
		if err != nil {
			return fmt.Errorf("mark refresh token used: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(protocol.ErrConflict, "Refresh token reused.")
		}
		old.UsedAt = now
		next.FamilyID, next.UserID, next.CreatedAt = old.FamilyID, old.UserID, now
		return db.insertToken(ctx, tx, next)
	})
	return old, err
}

// RefreshTokenByHash returns the record for hash, or protocol.ErrNotFound.
func (db *DB) RefreshTokenByHash(ctx context.Context, hash string) (*store.RefreshToken, error) {
	t, err := scanToken(db.read.QueryRowContext(ctx, db.q(`SELECT `+tokenColumns+` FROM refresh_tokens WHERE hash = ?`), hash))
	if err != nil {
		return nil, db.notFound(err, "refresh token")
	}
	return t, nil
}

func (db *DB) revokeTokens(ctx context.Context, column, value string) (int, error) {
	var live int
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM refresh_tokens WHERE `+column+` = ? AND revoked_at = 0 AND used_at = 0`),
			value).Scan(&live); err != nil {
			return fmt.Errorf("count live tokens: %w", err)
		}
		// Used tokens are revoked too, so that replaying one is still
		// recognised as reuse of a dead family.
		_, err := tx.ExecContext(ctx, db.q(`UPDATE refresh_tokens SET revoked_at = ? WHERE `+column+` = ? AND revoked_at = 0`),
			db.now().UnixMilli(), value)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("revoke tokens: %w", err)
	}
	return live, nil
}

// RevokeTokenFamily revokes every token of the family.
func (db *DB) RevokeTokenFamily(ctx context.Context, familyID string) (int, error) {
	return db.revokeTokens(ctx, "family_id", familyID)
}

// RevokeUserTokens revokes every refresh token of the user.
func (db *DB) RevokeUserTokens(ctx context.Context, userID string) (int, error) {
	return db.revokeTokens(ctx, "user_id", userID)
}

// DeleteExpiredTokens removes tokens that expired before t.
func (db *DB) DeleteExpiredTokens(ctx context.Context, t time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, db.q(`DELETE FROM refresh_tokens WHERE expires_at < ?`), t.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("delete expired tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

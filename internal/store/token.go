package store

import (
	"context"
	"time"
)

// RefreshToken is the stored form of an opaque refresh token: only its
// SHA-256 digest is kept. Tokens issued by rotating one another share a
// FamilyID; presenting a token that was already used revokes the family
// (the token was stolen, or replayed).
type RefreshToken struct {
	Hash      string // hex SHA-256 of the token as given to the client
	FamilyID  string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero until rotated
	RevokedAt time.Time // zero unless revoked
}

// TokenStore keeps refresh tokens.
type TokenStore interface {
	// CreateRefreshToken stores t. Returns protocol.ErrConflict on a duplicate hash.
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error

	// RotateRefreshToken atomically marks the token with oldHash used and
	// stores next in the same family, returning the old token's record.
	// Returns protocol.ErrNotFound if no such token exists or it has expired or been
	// revoked, and protocol.ErrConflict (with the old record) if it was used before: a
	// reuse, after which the caller revokes the family.
	RotateRefreshToken(ctx context.Context, oldHash string, next *RefreshToken) (*RefreshToken, error)

	// RefreshTokenByHash returns the record for hash, or protocol.ErrNotFound.
	RefreshTokenByHash(ctx context.Context, hash string) (*RefreshToken, error)

	// RevokeTokenFamily revokes every token of the family and returns how
	// many were live.
	RevokeTokenFamily(ctx context.Context, familyID string) (int, error)

	// RevokeUserTokens revokes every refresh token of the user and returns
	// how many were live.
	RevokeUserTokens(ctx context.Context, userID string) (int, error)

	// DeleteExpiredTokens removes tokens that expired before t.
	DeleteExpiredTokens(ctx context.Context, t time.Time) (int, error)
}

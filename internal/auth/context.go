package auth

import (
	"context"

	"github.com/unhidra/unhidra"
)

type contextKey int

const userKey contextKey = iota

// NewContext returns a context carrying the authenticated user.
func NewContext(ctx context.Context, u *unhidra.User) context.Context {
	return context.WithValue(ctx, userKey, u)
}

// UserFromContext returns the authenticated user, or nil.
func UserFromContext(ctx context.Context) *unhidra.User {
	u, _ := ctx.Value(userKey).(*unhidra.User)
	return u
}

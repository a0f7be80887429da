package store

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
)

// UserFilter selects users. Nil pointer fields are not filtered on.
type UserFilter struct {
	ID       *string
	Role     *unhidra.Role
	Disabled *bool
	// After pages by ID: only users whose ID sorts after it.
	After string
	Limit int
}

// UserUpdate changes a user. Nil pointer fields are left alone.
type UserUpdate struct {
	DisplayName  *string
	Role         *unhidra.Role
	Disabled     *bool
	PasswordHash *string
	FailedLogins *int
	LockedUntil  *time.Time
	// BumpEpoch increments SessionEpoch. An update that bumps the epoch or
	// changes Disabled or Role also records an IdentityEvent in the same
	// transaction.
	BumpEpoch bool
}

// IsZero reports whether upd changes nothing.
func (upd UserUpdate) IsZero() bool { return upd == UserUpdate{} }

// IdentityEvent says that an identity's sessions or standing changed: every
// node drops what it cached about it and closes connections that are no
// longer valid.
type IdentityEvent struct {
	Seq      int64
	Identity string
	At       time.Time
}

// UserStore keeps accounts.
type UserStore interface {
	// CreateUser stores u, filling ID, CreatedAt and UpdatedAt.
	// Returns protocol.ErrConflict if the name is taken (case-insensitively).
	CreateUser(ctx context.Context, u *unhidra.User) error

	// UserByID returns the user with that ID, or protocol.ErrNotFound.
	UserByID(ctx context.Context, id string) (*unhidra.User, error)

	// UserByName returns the user whose name matches case-insensitively,
	// or protocol.ErrNotFound.
	UserByName(ctx context.Context, name string) (*unhidra.User, error)

	// Users returns users matching the filter, ordered by ID.
	Users(ctx context.Context, f UserFilter) ([]*unhidra.User, error)

	// CountUsers returns how many accounts exist (any role, any state).
	CountUsers(ctx context.Context) (int, error)

	// UpdateUser applies upd and returns the updated user, or protocol.ErrNotFound.
	UpdateUser(ctx context.Context, id string, upd UserUpdate) (*unhidra.User, error)

	// AppendIdentityEvent records that identity changed.
	AppendIdentityEvent(ctx context.Context, identity string) error
	// IdentityEvents returns events with Seq > after, oldest first, at most
	// limit of them.
	IdentityEvents(ctx context.Context, after int64, limit int) ([]IdentityEvent, error)
	// LastIdentityEvent returns the highest Seq (0 when there is none).
	LastIdentityEvent(ctx context.Context) (int64, error)
	// PruneIdentityEvents deletes events older than t.
	PruneIdentityEvents(ctx context.Context, t time.Time) (int, error)
}

package store

import (
	"context"
	"time"
)

// Role is what an account may do. Bots are accounts too: they sign in with
// their own tokens and connect like people.
type Role string

const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
	RoleBot    Role = "bot"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleMember || r == RoleBot }

// User is an account. Name is the login name as the user typed it (NFC
// normalised); uniqueness is on its case-folded form.
type User struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	DisplayName  string    `json:"display_name"`
	Role         Role      `json:"role"`
	Disabled     bool      `json:"disabled"`
	PasswordHash string    `json:"-"`
	FailedLogins int       `json:"-"`
	LockedUntil  time.Time `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// IsAdmin reports whether u may use the admin API.
func (u *User) IsAdmin() bool { return u != nil && u.Role == RoleAdmin && !u.Disabled }

// UserFilter selects users. Nil pointer fields are not filtered on.
type UserFilter struct {
	ID       *string
	Role     *Role
	Disabled *bool
	// After pages by ID: only users whose ID sorts after it.
	After string
	Limit int
}

// UserUpdate changes a user. Nil pointer fields are left alone.
type UserUpdate struct {
	DisplayName  *string
	Role         *Role
	Disabled     *bool
	PasswordHash *string
	FailedLogins *int
	LockedUntil  *time.Time
}

// UserStore keeps accounts.
type UserStore interface {
	// CreateUser stores u, filling ID, CreatedAt and UpdatedAt.
	// Returns ECONFLICT if the name is taken (case-insensitively).
	CreateUser(ctx context.Context, u *User) error

	// UserByID returns the user with that ID, or ENOTFOUND.
	UserByID(ctx context.Context, id string) (*User, error)

	// UserByName returns the user whose name matches case-insensitively,
	// or ENOTFOUND.
	UserByName(ctx context.Context, name string) (*User, error)

	// Users returns users matching the filter, ordered by ID.
	Users(ctx context.Context, f UserFilter) ([]*User, error)

	// CountUsers returns how many accounts exist (any role, any state).
	CountUsers(ctx context.Context) (int, error)

	// UpdateUser applies upd and returns the updated user, or ENOTFOUND.
	UpdateUser(ctx context.Context, id string, upd UserUpdate) (*User, error)
}

package unhidra

import (
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

// User is an account. Name is the login name as the user typed it (PRECIS
// enforced); uniqueness is on its confusable skeleton (see package names),
// shared with device names.
type User struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	DisplayName  string    `json:"display_name"`
	Role         Role      `json:"role"`
	Disabled     bool      `json:"disabled"`
	PasswordHash string    `json:"-"`
	FailedLogins int       `json:"-"`
	LockedUntil  time.Time `json:"-"`
	// SessionEpoch is carried by every access token issued to the user; a
	// token of an older epoch is invalid. Bumped by every change that must
	// end sessions (password, disable, role, "sign out everywhere").
	SessionEpoch int64     `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// IsAdmin reports whether u may use the admin API.
func (u *User) IsAdmin() bool { return u != nil && u.Role == RoleAdmin && !u.Disabled }

package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

const userColumns = `id, name, display_name, role, disabled, password_hash, failed_logins, locked_until, created_at, updated_at`

// NameKey is the form of a name that uniqueness is checked on.
func NameKey(name string) string { return strings.ToLower(name) }

func scanUser(row interface{ Scan(...any) error }) (*unhidra.User, error) {
	var u unhidra.User
	var role string
	var locked, created, updated int64
	if err := row.Scan(&u.ID, &u.Name, &u.DisplayName, &role, &u.Disabled, &u.PasswordHash,
		&u.FailedLogins, &locked, &created, &updated); err != nil {
		return nil, err
	}
	u.Role = unhidra.Role(role)
	u.LockedUntil = store.FromUnixMilli(locked)
	u.CreatedAt = store.FromUnixMilli(created)
	u.UpdatedAt = store.FromUnixMilli(updated)
	return &u, nil
}

// CreateUser stores u. Returns protocol.ErrConflict if the name is taken.
func (db *DB) CreateUser(ctx context.Context, u *unhidra.User) error {
	if u.ID == "" {
		u.ID = unhidra.NewID(unhidra.PrefixUser)
	}
	now := db.now()
	u.CreatedAt, u.UpdatedAt = now, now
	return db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.q(`INSERT INTO users
		(id, name, name_key, display_name, role, disabled, password_hash, failed_logins, locked_until, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			u.ID, u.Name, NameKey(u.Name), u.DisplayName, string(u.Role), u.Disabled, u.PasswordHash,
			u.FailedLogins, store.UnixMilli(u.LockedUntil), now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return fmt.Errorf("create user: %w", db.formatError(err, "That name is taken."))
		}
		// Every account joins the default channel (when it exists).
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO conversation_members (conversation_id, member_id, role, joined_at)
			SELECT id, ?, ?, ? FROM conversations WHERE id = ?`), u.ID, unhidra.ChanMember, now.UnixMilli(), unhidra.GeneralChannelID); err != nil {
			return fmt.Errorf("join default channel: %w", err)
		}
		return nil
	})
}

// UserByID returns the user with that ID, or protocol.ErrNotFound.
func (db *DB) UserByID(ctx context.Context, id string) (*unhidra.User, error) {
	u, err := scanUser(db.read.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
	if err != nil {
		return nil, db.notFound(err, "user")
	}
	return u, nil
}

// UserByName returns the user whose name matches case-insensitively, or protocol.ErrNotFound.
func (db *DB) UserByName(ctx context.Context, name string) (*unhidra.User, error) {
	u, err := scanUser(db.read.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE name_key = ?`), NameKey(name)))
	if err != nil {
		return nil, db.notFound(err, "user")
	}
	return u, nil
}

// notFound turns sql.ErrNoRows into protocol.ErrNotFound naming the entity, and wraps
// anything else.
func (db *DB) notFound(err error, what string) error {
	if err == sql.ErrNoRows {
		return unhidra.Errorf(protocol.ErrNotFound, "No such %s.", what)
	}
	return fmt.Errorf("find %s: %w", what, err)
}

// Users returns users matching the filter, ordered by ID.
func (db *DB) Users(ctx context.Context, f store.UserFilter) ([]*unhidra.User, error) {
	where, args := []string{"1=1"}, []any{}
	if f.ID != nil {
		where, args = append(where, "id = ?"), append(args, *f.ID)
	}
	if f.Role != nil {
		where, args = append(where, "role = ?"), append(args, string(*f.Role))
	}
	if f.Disabled != nil {
		where, args = append(where, "disabled = ?"), append(args, *f.Disabled)
	}
	if f.After != "" {
		where, args = append(where, "id > ?"), append(args, f.After)
	}
	args = append(args, store.Clamp(f.Limit, 100, 1000))
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []*unhidra.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("scan user: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountUsers returns how many accounts exist.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// UpdateUser applies upd and returns the updated user, or protocol.ErrNotFound.
func (db *DB) UpdateUser(ctx context.Context, id string, upd store.UserUpdate) (*unhidra.User, error) {
	set, args := []string{"updated_at = ?"}, []any{db.now().UnixMilli()}
	if upd.DisplayName != nil {
		set, args = append(set, "display_name = ?"), append(args, *upd.DisplayName)
	}
	if upd.Role != nil {
		set, args = append(set, "role = ?"), append(args, string(*upd.Role))
	}
	if upd.Disabled != nil {
		set, args = append(set, "disabled = ?"), append(args, *upd.Disabled)
	}
	if upd.PasswordHash != nil {
		set, args = append(set, "password_hash = ?"), append(args, *upd.PasswordHash)
	}
	if upd.FailedLogins != nil {
		set, args = append(set, "failed_logins = ?"), append(args, *upd.FailedLogins)
	}
	if upd.LockedUntil != nil {
		set, args = append(set, "locked_until = ?"), append(args, store.UnixMilli(*upd.LockedUntil))
	}
	args = append(args, id)
	var u *unhidra.User
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE users SET `+strings.Join(set, ", ")+` WHERE id = ?`), args...)
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such user.")
		}
		u, err = scanUser(tx.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
		return err
	})
	return u, err
}

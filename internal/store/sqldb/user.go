package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/names"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

const userColumns = `id, name, display_name, role, disabled, password_hash, failed_logins, locked_until, created_at, updated_at, session_epoch`

// NameKey is the form of a name that sign-in looks it up by. Uniqueness is
// also checked on the stricter confusable skeleton (name_skeletons).
func NameKey(name string) string { return strings.ToLower(name) }

func scanUser(row interface{ Scan(...any) error }) (*unhidra.User, error) {
	var u unhidra.User
	var role string
	var locked, created, updated int64
	if err := row.Scan(&u.ID, &u.Name, &u.DisplayName, &role, &u.Disabled, &u.PasswordHash,
		&u.FailedLogins, &locked, &created, &updated, &u.SessionEpoch); err != nil {
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
		if err := db.reserveSkeleton(ctx, tx, u.ID, u.Name); err != nil {
			return err
		}
		// Every account joins the default channel (when it exists).
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO conversation_members (conversation_id, member_id, role, joined_at)
			SELECT id, ?, ?, ? FROM conversations WHERE id = ?`), u.ID, unhidra.ChanMember, now.UnixMilli(), unhidra.GeneralChannelID); err != nil {
			return fmt.Errorf("join default channel: %w", err)
		}
		// Joining the default channel changed the co-members of everyone in
		// it: nodes that cache memberships hear of it as an identity event.
		return db.appendIdentityEvent(ctx, tx, u.ID)
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
	if upd.BumpEpoch {
		set = append(set, "session_epoch = session_epoch + 1")
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
		if upd.BumpEpoch || upd.Disabled != nil || upd.Role != nil {
			if err := db.appendIdentityEvent(ctx, tx, id); err != nil {
				return err
			}
		}
		u, err = scanUser(tx.QueryRowContext(ctx, db.q(`SELECT `+userColumns+` FROM users WHERE id = ?`), id))
		return err
	})
	return u, err
}

// errLookalike is the conflict of a name whose skeleton is taken.
const errLookalike = "That name is taken or looks too much like an existing user or device name."

// reserveSkeleton records the skeleton of a user's name, refusing one that
// a user or a live device already has.
func (db *DB) reserveSkeleton(ctx context.Context, tx *sql.Tx, id, name string) error {
	sk := names.Skeleton(name)
	var n int
	if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM devices WHERE name_skeleton = ? AND revoked_at = 0`), sk).Scan(&n); err != nil {
		return fmt.Errorf("check name skeleton: %w", err)
	}
	if n > 0 {
		return unhidra.Errorf(protocol.ErrConflict, errLookalike)
	}
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO name_skeletons (skeleton, identity) VALUES (?, ?)`), sk, id); err != nil {
		return fmt.Errorf("reserve name: %w", db.formatError(err, errLookalike))
	}
	return nil
}

// BackfillSkeletons reserves the skeletons of users and devices created
// before skeletons were kept (an upgraded database). Names that already
// collide keep working; only new names are checked. It returns how many
// were added.
func (db *DB) BackfillSkeletons(ctx context.Context) (int, error) {
	added := 0
	rows, err := db.read.QueryContext(ctx, `SELECT id, name FROM users WHERE id NOT IN (SELECT identity FROM name_skeletons)`)
	if err != nil {
		return 0, fmt.Errorf("list users without skeletons: %w", err)
	}
	type idName struct{ id, name string }
	var todo []idName
	for rows.Next() {
		var x idName
		if err := rows.Scan(&x.id, &x.name); err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, x)
	}
	rows.Close()
	for _, x := range todo {
		res, err := db.write.ExecContext(ctx, db.q(`INSERT INTO name_skeletons (skeleton, identity) VALUES (?, ?) ON CONFLICT DO NOTHING`),
			names.Skeleton(x.name), x.id)
		if err != nil {
			return added, fmt.Errorf("backfill skeleton: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			added++
		}
	}
	rows, err = db.read.QueryContext(ctx, `SELECT id, name FROM devices WHERE name_skeleton = ''`)
	if err != nil {
		return added, fmt.Errorf("list devices without skeletons: %w", err)
	}
	todo = todo[:0]
	for rows.Next() {
		var x idName
		if err := rows.Scan(&x.id, &x.name); err != nil {
			rows.Close()
			return added, err
		}
		todo = append(todo, x)
	}
	rows.Close()
	for _, x := range todo {
		if _, err := db.write.ExecContext(ctx, db.q(`UPDATE devices SET name_skeleton = ? WHERE id = ?`), names.Skeleton(x.name), x.id); err != nil {
			return added, fmt.Errorf("backfill device skeleton: %w", err)
		}
		added++
	}
	return added, nil
}

func (db *DB) appendIdentityEvent(ctx context.Context, tx *sql.Tx, identity string) error {
	if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO identity_events (identity, at) VALUES (?, ?)`), identity, db.now().UnixMilli()); err != nil {
		return fmt.Errorf("record identity event: %w", err)
	}
	return nil
}

// AppendIdentityEvent records that identity changed.
func (db *DB) AppendIdentityEvent(ctx context.Context, identity string) error {
	return db.inTx(ctx, func(tx *sql.Tx) error { return db.appendIdentityEvent(ctx, tx, identity) })
}

// IdentityEvents returns events with Seq > after, oldest first.
func (db *DB) IdentityEvents(ctx context.Context, after int64, limit int) ([]store.IdentityEvent, error) {
	limit = store.Clamp(limit, 100, 1000)
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT seq, identity, at FROM identity_events WHERE seq > ? ORDER BY seq LIMIT `+
		strconv.Itoa(limitLiteral(limit))), after)
	if err != nil {
		return nil, fmt.Errorf("list identity events: %w", err)
	}
	defer rows.Close()
	var out []store.IdentityEvent
	for len(out) < limit && rows.Next() {
		var e store.IdentityEvent
		var at int64
		if err := rows.Scan(&e.Seq, &e.Identity, &at); err != nil {
			return nil, fmt.Errorf("scan identity event: %w", err)
		}
		e.At = store.FromUnixMilli(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// LastIdentityEvent returns the highest Seq (0 when there is none).
func (db *DB) LastIdentityEvent(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := db.read.QueryRowContext(ctx, `SELECT MAX(seq) FROM identity_events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("last identity event: %w", err)
	}
	return n.Int64, nil
}

// PruneIdentityEvents deletes events older than t.
func (db *DB) PruneIdentityEvents(ctx context.Context, t time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, db.q(`DELETE FROM identity_events WHERE at < ?`), t.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune identity events: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

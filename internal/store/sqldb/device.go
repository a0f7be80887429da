package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/names"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

var _ store.DeviceStore = (*DB)(nil)

const deviceColumns = `id, owner_id, name, type, capabilities, key_id, key_hash, key_created_at, created_at, revoked_at,
	last_seen, connected_since, reboots, free_heap, uptime, may_dm_people`

func scanDevice(row interface{ Scan(...any) error }) (*unhidra.Device, error) {
	var d unhidra.Device
	var caps string
	var keyCreated, created, revoked, seen, since int64
	if err := row.Scan(&d.ID, &d.OwnerID, &d.Name, &d.Type, &caps, &d.KeyID, &d.KeyHash, &keyCreated, &created, &revoked,
		&seen, &since, &d.Reboots, &d.FreeHeap, &d.Uptime, &d.MayDMPeople); err != nil {
		return nil, err
	}
	d.Capabilities = json.RawMessage(caps)
	d.KeyCreatedAt = store.FromUnixMilli(keyCreated)
	d.CreatedAt = store.FromUnixMilli(created)
	d.RevokedAt = store.FromUnixMilli(revoked)
	d.LastSeen = store.FromUnixMilli(seen)
	d.ConnectedSince = store.FromUnixMilli(since)
	return &d, nil
}

// CreateDevice stores d, filling CreatedAt. Returns protocol.ErrConflict on a
// duplicate ID or key ID.
func (db *DB) CreateDevice(ctx context.Context, d *unhidra.Device) error {
	now := db.now()
	d.CreatedAt, d.KeyCreatedAt = now, now
	if len(d.Capabilities) == 0 {
		d.Capabilities = json.RawMessage(`{}`)
	}
	sk := names.Skeleton(d.Name)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		// A device must not pass for a person: its name may not look like
		// any user's.
		var n int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM name_skeletons WHERE skeleton = ?`), sk).Scan(&n); err != nil {
			return fmt.Errorf("check device name: %w", err)
		}
		if n > 0 {
			return unhidra.Errorf(protocol.ErrConflict, "That name looks too much like a user's name.")
		}
		_, err := tx.ExecContext(ctx, db.q(`INSERT INTO devices (id, owner_id, name, type, capabilities, key_id, key_hash,
		key_created_at, created_at, changed_at, name_skeleton, may_dm_people) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			d.ID, d.OwnerID, d.Name, d.Type, string(d.Capabilities), d.KeyID, d.KeyHash, now.UnixMilli(), now.UnixMilli(), now.UnixMilli(),
			sk, d.MayDMPeople)
		if err != nil {
			return fmt.Errorf("insert device: %w", db.formatError(err, "Duplicate device."))
		}
		return nil
	})
}

// DeviceByID returns the device (revoked ones too), or protocol.ErrNotFound.
func (db *DB) DeviceByID(ctx context.Context, id string) (*unhidra.Device, error) {
	d, err := scanDevice(db.read.QueryRowContext(ctx, db.q(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`), id))
	if err != nil {
		return nil, db.notFound(err, "device")
	}
	return d, nil
}

// DeviceByKeyID returns the device whose current key has that lookup ID,
// or protocol.ErrNotFound.
func (db *DB) DeviceByKeyID(ctx context.Context, keyID string) (*unhidra.Device, error) {
	d, err := scanDevice(db.read.QueryRowContext(ctx, db.q(`SELECT `+deviceColumns+` FROM devices WHERE key_id = ?`), keyID))
	if err != nil {
		return nil, db.notFound(err, "device")
	}
	return d, nil
}

// Devices returns devices matching f, ordered by ID.
func (db *DB) Devices(ctx context.Context, f store.DeviceFilter) ([]*unhidra.Device, error) {
	where, args := []string{"1=1"}, []any{}
	if f.OwnerID != "" {
		where, args = append(where, "owner_id = ?"), append(args, f.OwnerID)
	}
	if f.After != "" {
		where, args = append(where, "id > ?"), append(args, f.After)
	}
	if !f.ChangedSince.IsZero() {
		where, args = append(where, "changed_at >= ?"), append(args, f.ChangedSince.UnixMilli())
	}
	limit := store.Clamp(f.Limit, 100, 1000)
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT `+deviceColumns+` FROM devices WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id LIMIT `+strconv.Itoa(limitLiteral(limit))), args...)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []*unhidra.Device
	for len(out) < limit && rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("scan device: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CountDevices returns how many live devices the owner has.
func (db *DB) CountDevices(ctx context.Context, ownerID string) (int, error) {
	var n int
	err := db.read.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM devices WHERE owner_id = ? AND revoked_at = 0`), ownerID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count devices: %w", err)
	}
	return n, nil
}

// ReplaceDeviceKey installs a new key. Returns protocol.ErrNotFound if the device does
// not exist or is revoked, protocol.ErrConflict on a duplicate key ID.
func (db *DB) ReplaceDeviceKey(ctx context.Context, id, keyID, keyHash string) (*unhidra.Device, error) {
	var d *unhidra.Device
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		now := db.now().UnixMilli()
		res, err := tx.ExecContext(ctx, db.q(`UPDATE devices SET key_id = ?, key_hash = ?, key_created_at = ?, changed_at = ?
			WHERE id = ? AND revoked_at = 0`), keyID, keyHash, now, now, id)
		if err != nil {
			return fmt.Errorf("replace device key: %w", db.formatError(err, "Duplicate key."))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such device.")
		}
		d, err = scanDevice(tx.QueryRowContext(ctx, db.q(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`), id))
		return err
	})
	return d, err
}

// RevokeDevice revokes the device's key for good. Returns protocol.ErrNotFound if it
// does not exist or is already revoked.
func (db *DB) RevokeDevice(ctx context.Context, id string) (*unhidra.Device, error) {
	var d *unhidra.Device
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		now := db.now().UnixMilli()
		res, err := tx.ExecContext(ctx, db.q(`UPDATE devices SET revoked_at = ?, changed_at = ?, connected_since = 0
			WHERE id = ? AND revoked_at = 0`), now, now, id)
		if err != nil {
			return fmt.Errorf("revoke device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such device.")
		}
		d, err = scanDevice(tx.QueryRowContext(ctx, db.q(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`), id))
		return err
	})
	return d, err
}

// WriteDeviceBatch writes health, heap buckets, telemetry and audit events
// in one transaction: one commit (one fsync) for thousands of heartbeats.
func (db *DB) WriteDeviceBatch(ctx context.Context, b *store.DeviceBatch) error {
	if len(b.Health)+len(b.Heap)+len(b.Telemetry)+len(b.Events) == 0 {
		return nil
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if len(b.Health) > 0 {
			// A record older than the stored one is skipped: when a device
			// moves between nodes, the node it left may write its
			// "disconnected" after the new node's "connected", flushed
			// later or noticed later (a dead connection found by its
			// timeout), so both the time and the connection are compared.
			st, err := tx.PrepareContext(ctx, db.q(`UPDATE devices SET last_seen = ?, connected_since = ?, reboots = ?,
				free_heap = ?, uptime = ? WHERE id = ? AND last_seen <= ? AND (CAST(? AS BIGINT) = 0 OR connected_since <= ?)`))
			if err != nil {
				return fmt.Errorf("prepare health: %w", err)
			}
			defer st.Close()
			for _, h := range b.Health {
				seen, conn := store.UnixMilli(h.LastSeen), store.UnixMilli(h.Connection)
				if _, err := st.ExecContext(ctx, seen, store.UnixMilli(h.ConnectedSince),
					h.Reboots, h.FreeHeap, h.Uptime, h.DeviceID, seen, conn, conn); err != nil {
					return fmt.Errorf("write health: %w", err)
				}
			}
		}
		if len(b.Heap) > 0 {
			// Merging in SQL keeps concurrent writers (several nodes, or a
			// flush racing a restart) from losing samples; CASE instead of
			// MIN/LEAST because SQLite and PostgreSQL spell those differently.
			st, err := tx.PrepareContext(ctx, db.q(`INSERT INTO device_heap (device_id, res, start, min, max, sum, count)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (device_id, res, start) DO UPDATE SET
				min = CASE WHEN excluded.min < device_heap.min THEN excluded.min ELSE device_heap.min END,
				max = CASE WHEN excluded.max > device_heap.max THEN excluded.max ELSE device_heap.max END,
				sum = device_heap.sum + excluded.sum,
				count = device_heap.count + excluded.count`))
			if err != nil {
				return fmt.Errorf("prepare heap: %w", err)
			}
			defer st.Close()
			for _, h := range b.Heap {
				if _, err := st.ExecContext(ctx, h.DeviceID, h.Res, h.Start.UnixMilli(), h.Min, h.Max, h.Sum, h.Count); err != nil {
					return fmt.Errorf("write heap bucket: %w", err)
				}
			}
		}
		if len(b.Telemetry) > 0 {
			st, err := tx.PrepareContext(ctx, db.q(`INSERT INTO device_telemetry (device_id, at, readings) VALUES (?, ?, ?)`))
			if err != nil {
				return fmt.Errorf("prepare telemetry: %w", err)
			}
			defer st.Close()
			touched := map[string]bool{}
			for _, t := range b.Telemetry {
				if _, err := st.ExecContext(ctx, t.DeviceID, t.At.UnixMilli(), string(t.Readings)); err != nil {
					return fmt.Errorf("write telemetry: %w", err)
				}
				touched[t.DeviceID] = true
			}
			if b.KeepTelemetry > 0 {
				for id := range touched {
					// The subquery yields no row (NULL) while the device has
					// fewer than KeepTelemetry rows, and then nothing matches.
					if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM device_telemetry WHERE device_id = ? AND id <= (
						SELECT id FROM device_telemetry WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`),
						id, id, b.KeepTelemetry); err != nil {
						return fmt.Errorf("prune telemetry: %w", err)
					}
				}
			}
		}
		if len(b.Events) == 0 {
			return nil
		}
		// Prepared once: a reconnect storm puts thousands of events in a batch.
		st, err := tx.PrepareContext(ctx, db.q(`INSERT INTO audit_log (at, action, actor_id, actor_name, target, ip, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?)`))
		if err != nil {
			return fmt.Errorf("prepare device events: %w", err)
		}
		defer st.Close()
		for i := range b.Events {
			e := &b.Events[i]
			if e.At.IsZero() {
				e.At = db.now()
			}
			if _, err := st.ExecContext(ctx, e.At.UnixMilli(), e.Action, e.ActorID, e.ActorName, e.Target, e.IP, e.Detail); err != nil {
				return fmt.Errorf("write device event: %w", err)
			}
		}
		return nil
	})
}

// HeapSeries returns buckets of resolution res from since on, oldest first.
func (db *DB) HeapSeries(ctx context.Context, deviceID string, res int, since time.Time, limit int) ([]store.HeapBucket, error) {
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT start, min, max, sum, count FROM device_heap
		WHERE device_id = ? AND res = ? AND start >= ? ORDER BY start LIMIT ?`),
		deviceID, res, store.UnixMilli(since), store.Clamp(limit, 1440, 10000))
	if err != nil {
		return nil, fmt.Errorf("heap series: %w", err)
	}
	defer rows.Close()
	var out []store.HeapBucket
	for rows.Next() {
		b := store.HeapBucket{DeviceID: deviceID, Res: res}
		var start int64
		if err := rows.Scan(&start, &b.Min, &b.Max, &b.Sum, &b.Count); err != nil {
			return nil, fmt.Errorf("scan heap bucket: %w", err)
		}
		b.Start = store.FromUnixMilli(start)
		out = append(out, b)
	}
	return out, rows.Err()
}

// DeleteHeapBefore removes buckets of resolution res that start before t.
func (db *DB) DeleteHeapBefore(ctx context.Context, res int, t time.Time) (int, error) {
	r, err := db.write.ExecContext(ctx, db.q(`DELETE FROM device_heap WHERE res = ? AND start < ?`), res, t.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune heap: %w", err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

// RecentTelemetry returns the device's latest telemetry, newest first.
func (db *DB) RecentTelemetry(ctx context.Context, deviceID string, limit int) ([]unhidra.Telemetry, error) {
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT id, at, readings FROM device_telemetry WHERE device_id = ?
		ORDER BY id DESC LIMIT ?`), deviceID, store.Clamp(limit, 100, 1000))
	if err != nil {
		return nil, fmt.Errorf("recent telemetry: %w", err)
	}
	defer rows.Close()
	var out []unhidra.Telemetry
	for rows.Next() {
		t := unhidra.Telemetry{DeviceID: deviceID}
		var at int64
		var readings string
		if err := rows.Scan(&t.ID, &at, &readings); err != nil {
			return nil, fmt.Errorf("scan telemetry: %w", err)
		}
		t.At, t.Readings = store.FromUnixMilli(at), json.RawMessage(readings)
		out = append(out, t)
	}
	return out, rows.Err()
}

const commandColumns = `id, device_id, type, command, params, status, created_by, created_at, expires_at,
	delivered_at, answered_at, result, error`

func scanCommand(row interface{ Scan(...any) error }) (*unhidra.Command, error) {
	var c unhidra.Command
	var params, result string
	var created, expires, delivered, answered int64
	if err := row.Scan(&c.ID, &c.DeviceID, &c.Type, &c.Command, &params, &c.Status, &c.CreatedBy, &created, &expires,
		&delivered, &answered, &result, &c.Error); err != nil {
		return nil, err
	}
	if params != "" {
		c.Params = json.RawMessage(params)
	}
	if result != "" {
		c.Result = json.RawMessage(result)
	}
	c.CreatedAt, c.ExpiresAt = store.FromUnixMilli(created), store.FromUnixMilli(expires)
	c.DeliveredAt, c.AnsweredAt = store.FromUnixMilli(delivered), store.FromUnixMilli(answered)
	return &c, nil
}

// CreateCommand stores c, filling CreatedAt. Returns protocol.ErrConflict on a
// duplicate ID.
func (db *DB) CreateCommand(ctx context.Context, c *unhidra.Command) error {
	if c.CreatedAt.IsZero() {
		c.CreatedAt = db.now()
	}
	_, err := db.write.ExecContext(ctx, db.q(`INSERT INTO device_commands (id, device_id, type, command, params, status,
		created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		c.ID, c.DeviceID, c.Type, c.Command, string(c.Params), c.Status, c.CreatedBy, c.CreatedAt.UnixMilli(), c.ExpiresAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert command: %w", db.formatError(err, "Duplicate command."))
	}
	return nil
}

// CommandByID returns the device's command, or protocol.ErrNotFound.
func (db *DB) CommandByID(ctx context.Context, deviceID, id string) (*unhidra.Command, error) {
	c, err := scanCommand(db.read.QueryRowContext(ctx, db.q(`SELECT `+commandColumns+` FROM device_commands
		WHERE id = ? AND device_id = ?`), id, deviceID))
	if err != nil {
		return nil, db.notFound(err, "command")
	}
	return c, nil
}

// Commands returns the device's commands, newest first.
func (db *DB) Commands(ctx context.Context, deviceID, status string, limit int) ([]*unhidra.Command, error) {
	query, args := `SELECT `+commandColumns+` FROM device_commands WHERE device_id = ?`, []any{deviceID}
	if status != "" {
		query, args = query+` AND status = ?`, append(args, status)
	}
	args = append(args, store.Clamp(limit, 100, 1000))
	return db.queryCommands(ctx, db.read, query+` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
}

// PendingCommands implements store.DeviceStore. Every connecting device
// runs it, so the limit is a literal, not a parameter: SQLite (3.47 and
// later) plans with a bound LIMIT's value and so compiles the statement
// again on every execution that binds it (measured: half of this query's
// cost in a reconnect storm). Callers pass a constant, so the texts stay few.
func (db *DB) PendingCommands(ctx context.Context, deviceID string, limit int) ([]*unhidra.Command, error) {
	return db.queryCommands(ctx, db.read, `SELECT `+commandColumns+` FROM device_commands WHERE device_id = ?
		AND status IN ('`+unhidra.CommandQueued+`', '`+unhidra.CommandDelivered+`') ORDER BY created_at DESC, id DESC
		LIMIT `+strconv.Itoa(store.Clamp(limit, 100, 2000)), deviceID)
}

func (db *DB) queryCommands(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*unhidra.Command, error) {
	rows, err := q.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list commands: %w", err)
	}
	defer rows.Close()
	var out []*unhidra.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, fmt.Errorf("scan command: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// UpdateCommand applies u if the command is in one of u.From. Returns
// protocol.ErrNotFound if there is no such command, protocol.ErrConflict if it is in another state.
func (db *DB) UpdateCommand(ctx context.Context, deviceID, id string, u store.CommandUpdate) (*unhidra.Command, error) {
	var c *unhidra.Command
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = scanCommand(tx.QueryRowContext(ctx, db.q(`SELECT `+commandColumns+` FROM device_commands
			WHERE id = ? AND device_id = ?`), id, deviceID))
		if err != nil {
			return db.notFound(err, "command")
		}
		allowed := false
		for _, s := range u.From {
			allowed = allowed || c.Status == s
		}
		if !allowed {
			return unhidra.Errorf(protocol.ErrConflict, "The command is %s.", c.Status)
		}
		at := u.At
		if at.IsZero() {
			at = db.now()
		}
		c.Status = u.Status
		set, args := "status = ?", []any{u.Status}
		switch u.Status {
		case unhidra.CommandDelivered:
			c.DeliveredAt = at
			set, args = set+", delivered_at = ?", append(args, at.UnixMilli())
		case unhidra.CommandAcked, unhidra.CommandFailed:
			c.AnsweredAt, c.Result, c.Error = at, u.Result, u.Error
			set, args = set+", answered_at = ?, result = ?, error = ?", append(args, at.UnixMilli(), string(u.Result), u.Error)
		}
		_, err = tx.ExecContext(ctx, db.q(`UPDATE device_commands SET `+set+` WHERE id = ?`), append(args, id)...)
		if err != nil {
			return fmt.Errorf("update command: %w", err)
		}
		return nil
	})
	return c, err
}

// ExpireCommands marks queued and delivered commands whose expiry is at or
// before t expired, and returns them.
func (db *DB) ExpireCommands(ctx context.Context, t time.Time) ([]*unhidra.Command, error) {
	var out []*unhidra.Command
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = db.queryCommands(ctx, tx, `SELECT `+commandColumns+` FROM device_commands
			WHERE status IN ('queued', 'delivered') AND expires_at <= ? ORDER BY created_at LIMIT 1000`, t.UnixMilli())
		if err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, db.q(`UPDATE device_commands SET status = 'expired' WHERE id = ?`))
		if err != nil {
			return fmt.Errorf("prepare expire: %w", err)
		}
		defer st.Close()
		for _, c := range out {
			if _, err := st.ExecContext(ctx, c.ID); err != nil {
				return fmt.Errorf("expire command: %w", err)
			}
			c.Status = unhidra.CommandExpired
		}
		return nil
	})
	return out, err
}

// FollowDevice makes a conversation follow a device.
func (db *DB) FollowDevice(ctx context.Context, deviceID, conversationID, by string) error {
	return db.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT (SELECT COUNT(*) FROM devices WHERE id = ?) + (SELECT COUNT(*) FROM conversations WHERE id = ?)`),
			deviceID, conversationID).Scan(&n); err != nil {
			return fmt.Errorf("follow device: %w", err)
		}
		if n != 2 {
			return unhidra.Errorf(protocol.ErrNotFound, "No such device or conversation.")
		}
		_, err := tx.ExecContext(ctx, db.q(`INSERT INTO device_followers (device_id, conversation_id, created_by, created_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (device_id, conversation_id) DO NOTHING`), deviceID, conversationID, by, db.now().UnixMilli())
		if err != nil {
			return fmt.Errorf("follow device: %w", err)
		}
		return nil
	})
}

// UnfollowDevice stops a conversation following a device.
func (db *DB) UnfollowDevice(ctx context.Context, deviceID, conversationID string) error {
	res, err := db.write.ExecContext(ctx, db.q(`DELETE FROM device_followers WHERE device_id = ? AND conversation_id = ?`), deviceID, conversationID)
	if err != nil {
		return fmt.Errorf("unfollow device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return unhidra.Errorf(protocol.ErrNotFound, "The conversation does not follow the device.")
	}
	return nil
}

// DeviceFollowers returns the conversations following a device.
func (db *DB) DeviceFollowers(ctx context.Context, deviceID string) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT conversation_id FROM device_followers WHERE device_id = ? ORDER BY conversation_id`), deviceID)
	if err != nil {
		return nil, fmt.Errorf("device followers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// SetDeviceMayDMPeople sets whether the device may message people directly.
func (db *DB) SetDeviceMayDMPeople(ctx context.Context, id string, allow bool) error {
	res, err := db.write.ExecContext(ctx, db.q(`UPDATE devices SET may_dm_people = ? WHERE id = ?`), allow, id)
	if err != nil {
		return fmt.Errorf("set device permission: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return unhidra.Errorf(protocol.ErrNotFound, "No such device.")
	}
	return nil
}

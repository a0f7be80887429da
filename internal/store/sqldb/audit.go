package sqldb

import (
	"context"
	"fmt"
	"strings"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
)

// AppendAudit stores e, filling ID and, when zero, At.
func (db *DB) AppendAudit(ctx context.Context, e *unhidra.AuditEvent) error {
	if e.At.IsZero() {
		e.At = db.now()
	}
	err := db.write.QueryRowContext(ctx, db.q(`INSERT INTO audit_log (at, action, actor_id, actor_name, target, ip, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		e.At.UnixMilli(), e.Action, e.ActorID, e.ActorName, e.Target, e.IP, e.Detail).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
}

// AuditEvents returns events matching f, newest first.
func (db *DB) AuditEvents(ctx context.Context, f store.AuditFilter) ([]*unhidra.AuditEvent, error) {
	where, args := []string{"1=1"}, []any{}
	switch {
	case strings.HasSuffix(f.Action, "."):
		// Prefix match without LIKE, so '_' and '%' in input mean nothing.
		where, args = append(where, "substr(action, 1, ?) = ?"), append(args, len(f.Action), f.Action)
	case f.Action != "":
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	if f.ActorID != "" {
		where, args = append(where, "actor_id = ?"), append(args, f.ActorID)
	}
	if f.Target != "" {
		where, args = append(where, "target = ?"), append(args, f.Target)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, f.Until.UnixMilli())
	}
	if f.Before > 0 {
		where, args = append(where, "id < ?"), append(args, f.Before)
	}
	args = append(args, store.Clamp(f.Limit, 100, 1000))
	rows, err := db.read.QueryContext(ctx, db.q(`SELECT id, at, action, actor_id, actor_name, target, ip, detail
		FROM audit_log WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []*unhidra.AuditEvent
	for rows.Next() {
		var e unhidra.AuditEvent
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Action, &e.ActorID, &e.ActorName, &e.Target, &e.IP, &e.Detail); err != nil {
			return nil, fmt.Errorf("scan audit event: %w", err)
		}
		e.At = store.FromUnixMilli(at)
		out = append(out, &e)
	}
	return out, rows.Err()
}

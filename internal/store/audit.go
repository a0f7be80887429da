package store

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
)

// AuditFilter selects audit events, newest first. Zero fields do not filter.
type AuditFilter struct {
	Action  string // exact action, or a prefix ending in "." ("login.")
	ActorID string
	Target  string
	Since   time.Time
	Until   time.Time
	// Before pages backwards: only events with a smaller ID.
	Before int64
	Limit  int
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// AppendAudit stores e, filling ID (and At when zero).
	AppendAudit(ctx context.Context, e *unhidra.AuditEvent) error

	// AuditEvents returns events matching f, newest first.
	AuditEvents(ctx context.Context, f AuditFilter) ([]*unhidra.AuditEvent, error)
}

package store

import (
	"context"
	"time"
)

// Store is everything the server keeps durably. Services take only the
// narrow interface they need; the composition root hands them one Store.
type Store interface {
	UserStore
	TokenStore
	AuditStore
	ChatStore
	DeviceStore

	// Ping reports whether the store answers (readiness).
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// Clamp returns limit bounded to [1, max], using def when limit <= 0.
func Clamp(limit, def, max int) int {
	if limit <= 0 {
		return def
	}
	if limit > max {
		return max
	}
	return limit
}

// UnixMilli converts t to milliseconds since the epoch, mapping the zero
// time to 0 so that "never" round-trips.
func UnixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromUnixMilli is the inverse of UnixMilli.
func FromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/unhidra/unhidra"
)

// DeviceFilter selects devices, ordered by ID. Zero fields do not filter.
type DeviceFilter struct {
	OwnerID string
	// After pages by ID: only devices whose ID sorts after it.
	After string
	// ChangedSince selects devices whose key was replaced or revoked at or
	// after it (the server's check for changes made by other processes).
	ChangedSince time.Time
	Limit        int
}

// DeviceHealth is the health of one device, written in batches.
type DeviceHealth struct {
	DeviceID       string
	LastSeen       time.Time
	ConnectedSince time.Time // zero when the device is offline
	// Connection is when the connection this record comes from began
	// (zero: unknown). A record from an older connection than the stored
	// one's is skipped: the node a device left may notice and write the end
	// of its connection after the device reconnected elsewhere.
	Connection time.Time
	Reboots    int
	FreeHeap   int64
	Uptime     float64
}

// Resolutions of the free-heap series.
const (
	HeapMinute = 60
	HeapHour   = 3600
)

// HeapBucket aggregates free-heap samples of one device over one minute
// or one hour (Res, in seconds) starting at Start.
type HeapBucket struct {
	DeviceID string
	Res      int
	Start    time.Time
	Min, Max int64
	Sum      int64
	Count    int64
}

// DeviceBatch is what the device service writes in one transaction.
type DeviceBatch struct {
	Health    []DeviceHealth
	Heap      []HeapBucket // merged into stored buckets (min/max/sum/count)
	Telemetry []unhidra.Telemetry
	Events    []unhidra.AuditEvent
	// KeepTelemetry bounds the stored telemetry per device touched by the
	// batch; older rows are deleted. Zero keeps everything.
	KeepTelemetry int
}

// CommandUpdate moves a command on. From lists the states it may move from.
type CommandUpdate struct {
	From   []string
	Status string
	At     time.Time
	Result json.RawMessage
	Error  string
}

// DeviceStore keeps devices, their health, telemetry and commands.
type DeviceStore interface {
	// CreateDevice stores d, filling CreatedAt. Returns protocol.ErrConflict on a
	// duplicate ID or key ID.
	CreateDevice(ctx context.Context, d *unhidra.Device) error

	// DeviceByID returns the device (revoked ones too), or protocol.ErrNotFound.
	DeviceByID(ctx context.Context, id string) (*unhidra.Device, error)

	// DeviceByKeyID returns the device whose current key has that lookup
	// ID (revoked ones too), or protocol.ErrNotFound.
	DeviceByKeyID(ctx context.Context, keyID string) (*unhidra.Device, error)

	// Devices returns devices matching f, ordered by ID.
	Devices(ctx context.Context, f DeviceFilter) ([]*unhidra.Device, error)

	// CountDevices returns how many live (unrevoked) devices the owner has.
	CountDevices(ctx context.Context, ownerID string) (int, error)

	// ReplaceDeviceKey installs a new key (the old one stops working) and
	// returns the device. Returns protocol.ErrNotFound if the device does not exist or
	// is revoked, protocol.ErrConflict on a duplicate key ID.
	ReplaceDeviceKey(ctx context.Context, id, keyID, keyHash string) (*unhidra.Device, error)

	// RevokeDevice revokes the device's key for good and returns the
	// device. Returns protocol.ErrNotFound if it does not exist or is already revoked.
	RevokeDevice(ctx context.Context, id string) (*unhidra.Device, error)

	// SetDeviceMayDMPeople sets whether the device may send direct
	// messages to people, or returns ENOTFOUND.
	SetDeviceMayDMPeople(ctx context.Context, id string, allow bool) error

	// WriteDeviceBatch writes health, heap buckets, telemetry and audit
	// events in one transaction. A health record whose LastSeen is older
	// than the stored one, or whose Connection began before the stored
	// connection, is skipped (newest wins, whichever node flushes last).
	WriteDeviceBatch(ctx context.Context, b *DeviceBatch) error

	// HeapSeries returns the device's buckets of resolution res starting at
	// or after since, oldest first, at most limit.
	HeapSeries(ctx context.Context, deviceID string, res int, since time.Time, limit int) ([]HeapBucket, error)

	// DeleteHeapBefore removes buckets of resolution res that start before t.
	DeleteHeapBefore(ctx context.Context, res int, t time.Time) (int, error)

	// RecentTelemetry returns the device's latest telemetry, newest first.
	RecentTelemetry(ctx context.Context, deviceID string, limit int) ([]unhidra.Telemetry, error)

	// CreateCommand stores c, filling CreatedAt. Returns protocol.ErrConflict on a
	// duplicate ID.
	CreateCommand(ctx context.Context, c *unhidra.Command) error

	// CommandByID returns the device's command, or protocol.ErrNotFound.
	CommandByID(ctx context.Context, deviceID, id string) (*unhidra.Command, error)

	// Commands returns the device's commands, newest first. A non-empty
	// status selects only commands in that state.
	Commands(ctx context.Context, deviceID, status string, limit int) ([]*unhidra.Command, error)

	// PendingCommands returns the device's queued and delivered commands,
	// newest first, in one read (what a connecting device is owed).
	PendingCommands(ctx context.Context, deviceID string, limit int) ([]*unhidra.Command, error)

	// UpdateCommand applies u if the command is in one of u.From and
	// returns the updated command. Returns protocol.ErrNotFound if there is no such
	// command and protocol.ErrConflict if it is in another state.
	UpdateCommand(ctx context.Context, deviceID, id string, u CommandUpdate) (*unhidra.Command, error)

	// ExpireCommands marks queued and delivered commands whose expiry is at
	// or before t expired, and returns them.
	ExpireCommands(ctx context.Context, t time.Time) ([]*unhidra.Command, error)

	// FollowDevice makes a conversation follow a device (idempotent).
	// Returns protocol.ErrNotFound if either does not exist.
	FollowDevice(ctx context.Context, deviceID, conversationID, by string) error
	// UnfollowDevice stops it; protocol.ErrNotFound if it did not follow.
	UnfollowDevice(ctx context.Context, deviceID, conversationID string) error
	// DeviceFollowers returns the conversations following a device.
	DeviceFollowers(ctx context.Context, deviceID string) ([]string, error)
}

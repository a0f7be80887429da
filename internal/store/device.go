package store

import (
	"context"
	"encoding/json"
	"time"
)

// Prefixes of device-related IDs.
const (
	PrefixDevice  = "dev"
	PrefixCommand = "cmd"
)

// Audit actions of the device trail. Target is the device ID; the owner
// queries them through the device API.
const (
	AuditDeviceRegistered   = "device.registered"
	AuditDeviceConnected    = "device.connected"
	AuditDeviceDisconnected = "device.disconnected"
	AuditDeviceRebooted     = "device.rebooted"
	AuditDeviceKeyRotated   = "device.key_rotated"
	AuditDeviceRevoked      = "device.revoked"
)

// Device is a registered device. Only the digest of its API key is kept;
// KeyID is the key's public lookup part.
type Device struct {
	ID           string          `json:"id"`
	OwnerID      string          `json:"owner_id"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Capabilities json.RawMessage `json:"capabilities"`
	KeyID        string          `json:"-"`
	KeyHash      string          `json:"-"`
	KeyCreatedAt time.Time       `json:"key_created_at"`
	CreatedAt    time.Time       `json:"created_at"`
	RevokedAt    time.Time       `json:"revoked_at,omitzero"`

	// Health as last written by the server (see DeviceHealth).
	LastSeen       time.Time `json:"last_seen,omitzero"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	Reboots        int       `json:"reboots"`
	FreeHeap       int64     `json:"free_heap"`
	Uptime         float64   `json:"uptime"` // seconds since boot, from the last heartbeat
}

// Revoked reports whether the device's key was revoked.
func (d *Device) Revoked() bool { return !d.RevokedAt.IsZero() }

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
	Reboots        int
	FreeHeap       int64
	Uptime         float64
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

// Telemetry is one telemetry frame of a device: a small JSON object.
type Telemetry struct {
	ID       int64           `json:"id"`
	DeviceID string          `json:"-"`
	At       time.Time       `json:"at"`
	Readings json.RawMessage `json:"readings"`
}

// DeviceBatch is what the device service writes in one transaction.
type DeviceBatch struct {
	Health    []DeviceHealth
	Heap      []HeapBucket // merged into stored buckets (min/max/sum/count)
	Telemetry []Telemetry
	Events    []AuditEvent
	// KeepTelemetry bounds the stored telemetry per device touched by the
	// batch; older rows are deleted. Zero keeps everything.
	KeepTelemetry int
}

// Command states.
const (
	CommandQueued    = "queued"
	CommandDelivered = "delivered"
	CommandAcked     = "acked"
	CommandFailed    = "failed"
	CommandExpired   = "expired"
)

// Command is an instruction to a device, queued until delivered or expired.
type Command struct {
	ID          string          `json:"id"`
	DeviceID    string          `json:"device"`
	Type        string          `json:"type"` // "command", "config" or "ota"
	Command     string          `json:"command"`
	Params      json.RawMessage `json:"params,omitempty"`
	Status      string          `json:"status"`
	CreatedBy   string          `json:"created_by"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	DeliveredAt time.Time       `json:"delivered_at,omitzero"`
	AnsweredAt  time.Time       `json:"answered_at,omitzero"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
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
	// CreateDevice stores d, filling CreatedAt. Returns ECONFLICT on a
	// duplicate ID or key ID.
	CreateDevice(ctx context.Context, d *Device) error

	// DeviceByID returns the device (revoked ones too), or ENOTFOUND.
	DeviceByID(ctx context.Context, id string) (*Device, error)

	// DeviceByKeyID returns the device whose current key has that lookup
	// ID (revoked ones too), or ENOTFOUND.
	DeviceByKeyID(ctx context.Context, keyID string) (*Device, error)

	// Devices returns devices matching f, ordered by ID.
	Devices(ctx context.Context, f DeviceFilter) ([]*Device, error)

	// CountDevices returns how many live (unrevoked) devices the owner has.
	CountDevices(ctx context.Context, ownerID string) (int, error)

	// ReplaceDeviceKey installs a new key (the old one stops working) and
	// returns the device. Returns ENOTFOUND if the device does not exist or
	// is revoked, ECONFLICT on a duplicate key ID.
	ReplaceDeviceKey(ctx context.Context, id, keyID, keyHash string) (*Device, error)

	// RevokeDevice revokes the device's key for good and returns the
	// device. Returns ENOTFOUND if it does not exist or is already revoked.
	RevokeDevice(ctx context.Context, id string) (*Device, error)

	// WriteDeviceBatch writes health, heap buckets, telemetry and audit
	// events in one transaction.
	WriteDeviceBatch(ctx context.Context, b *DeviceBatch) error

	// HeapSeries returns the device's buckets of resolution res starting at
	// or after since, oldest first, at most limit.
	HeapSeries(ctx context.Context, deviceID string, res int, since time.Time, limit int) ([]HeapBucket, error)

	// DeleteHeapBefore removes buckets of resolution res that start before t.
	DeleteHeapBefore(ctx context.Context, res int, t time.Time) (int, error)

	// RecentTelemetry returns the device's latest telemetry, newest first.
	RecentTelemetry(ctx context.Context, deviceID string, limit int) ([]Telemetry, error)

	// CreateCommand stores c, filling CreatedAt. Returns ECONFLICT on a
	// duplicate ID.
	CreateCommand(ctx context.Context, c *Command) error

	// CommandByID returns the device's command, or ENOTFOUND.
	CommandByID(ctx context.Context, deviceID, id string) (*Command, error)

	// Commands returns the device's commands, newest first. A non-empty
	// status selects only commands in that state.
	Commands(ctx context.Context, deviceID, status string, limit int) ([]*Command, error)

	// UpdateCommand applies u if the command is in one of u.From and
	// returns the updated command. Returns ENOTFOUND if there is no such
	// command and ECONFLICT if it is in another state.
	UpdateCommand(ctx context.Context, deviceID, id string, u CommandUpdate) (*Command, error)

	// ExpireCommands marks queued and delivered commands whose expiry is at
	// or before t expired, and returns them.
	ExpireCommands(ctx context.Context, t time.Time) ([]*Command, error)
}

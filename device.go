package unhidra

import (
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
	AuditDeviceSettings     = "device.settings_changed"
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
	// MayDMPeople is the owner's permission for the device to send direct
	// messages to people; off by default.
	MayDMPeople bool `json:"may_dm_people"`

	// Health as last written by the server (see DeviceHealth).
	LastSeen       time.Time `json:"last_seen,omitzero"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	Reboots        int       `json:"reboots"`
	FreeHeap       int64     `json:"free_heap"`
	Uptime         float64   `json:"uptime"` // seconds since boot, from the last heartbeat
}

// Revoked reports whether the device's key was revoked.
func (d *Device) Revoked() bool { return !d.RevokedAt.IsZero() }

// Telemetry is one telemetry frame of a device: a small JSON object.
type Telemetry struct {
	ID       int64           `json:"id"`
	DeviceID string          `json:"-"`
	At       time.Time       `json:"at"`
	Readings json.RawMessage `json:"readings"`
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

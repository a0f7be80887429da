package device

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/names"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Store is what the device package needs from the store.
type Store interface {
	store.DeviceStore
	store.AuditStore
	UserByID(ctx context.Context, id string) (*unhidra.User, error)
}

// Limits on registration input.
const (
	MaxTypeLen          = 32
	MaxCapabilitiesSize = 4096
	// DefaultMaxPerOwner bounds the live devices one account may register.
	DefaultMaxPerOwner = 1000
)

// Registration is what an owner supplies to register a device.
type Registration struct {
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Capabilities json.RawMessage `json:"capabilities,omitempty"`
}

// Valid implements api.Validator.
func (r *Registration) Valid(context.Context) error {
	r.Name = strings.TrimSpace(r.Name)
	n, err := names.Device(r.Name)
	if err != nil {
		return unhidra.Errorf(protocol.ErrInvalid, "%s", err.Error())
	}
	r.Name = n
	switch {
	case r.Name == "" || len(r.Name) > unhidra.MaxNameLen:
		return unhidra.Errorf(protocol.ErrInvalid, "name must be 1 to %d bytes.", unhidra.MaxNameLen)
	case !utf8.ValidString(r.Name) || strings.IndexFunc(r.Name, unicode.IsControl) >= 0:
		return unhidra.Errorf(protocol.ErrInvalid, "name must be printable text.")
	case r.Type == "" || len(r.Type) > MaxTypeLen || !isIdent(r.Type):
		return unhidra.Errorf(protocol.ErrInvalid, "type must be 1 to %d characters of [A-Za-z0-9._-].", MaxTypeLen)
	case len(r.Capabilities) > MaxCapabilitiesSize:
		return unhidra.Errorf(protocol.ErrTooLarge, "capabilities must be at most %d bytes.", MaxCapabilitiesSize)
	}
	if len(r.Capabilities) > 0 && !isJSONObject(r.Capabilities) {
		return unhidra.Errorf(protocol.ErrInvalid, "capabilities must be a JSON object.")
	}
	return nil
}

// isIdent reports whether s has only [A-Za-z0-9._:-] characters.
func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return s != ""
}

func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	var m map[string]json.RawMessage
	return len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &m) == nil
}

// Registry issues, rotates, revokes and checks device keys. It is used by
// the server and by the admin CLI (which has no gateway).
type Registry struct {
	Store Store
	// MaxPerOwner bounds live devices per account. Zero means DefaultMaxPerOwner.
	MaxPerOwner int
	// Log receives failures that do not fail the operation. Nil discards.
	Log *slog.Logger
}

// Register creates a device for owner and returns it with its API key,
// which is shown this once and never stored. Returns protocol.ErrInvalid for bad
// input and protocol.ErrConflict when the owner has too many devices.
func (r *Registry) Register(ctx context.Context, owner *unhidra.User, reg Registration) (*unhidra.Device, string, error) {
	if err := reg.Valid(ctx); err != nil {
		return nil, "", err
	}
	limit := r.MaxPerOwner
	if limit <= 0 {
		limit = DefaultMaxPerOwner
	}
	n, err := r.Store.CountDevices(ctx, owner.ID)
	if err != nil {
		return nil, "", err
	}
	if n >= limit {
		return nil, "", unhidra.Errorf(protocol.ErrConflict, "An account may have at most %d devices.", limit)
	}
	key, keyID, digest := newKey()
	d := &unhidra.Device{ID: unhidra.NewID(unhidra.PrefixDevice), OwnerID: owner.ID, Name: reg.Name, Type: reg.Type,
		Capabilities: reg.Capabilities, KeyID: keyID, KeyHash: digest}
	if err := r.Store.CreateDevice(ctx, d); err != nil {
		return nil, "", fmt.Errorf("register device: %w", err)
	}
	r.audit(ctx, owner, unhidra.AuditDeviceRegistered, d.ID, map[string]any{"name": d.Name, "type": d.Type})
	return d, key, nil
}

// RotateKey replaces the device's key and returns the new one; the old key
// stops working at once. Returns protocol.ErrNotFound for unknown or revoked devices.
func (r *Registry) RotateKey(ctx context.Context, actor *unhidra.User, id string) (*unhidra.Device, string, error) {
	key, keyID, digest := newKey()
	d, err := r.Store.ReplaceDeviceKey(ctx, id, keyID, digest)
	if err != nil {
		return nil, "", err
	}
	r.audit(ctx, actor, unhidra.AuditDeviceKeyRotated, d.ID, nil)
	return d, key, nil
}

// Revoke revokes the device for good. Returns protocol.ErrNotFound for unknown or
// already revoked devices.
func (r *Registry) Revoke(ctx context.Context, actor *unhidra.User, id string) (*unhidra.Device, error) {
	d, err := r.Store.RevokeDevice(ctx, id)
	if err != nil {
		return nil, err
	}
	r.audit(ctx, actor, unhidra.AuditDeviceRevoked, d.ID, nil)
	return d, nil
}

// dummyDigest is compared against when a key ID is unknown, so unknown and
// wrong keys cost the same.
var dummyDigest = keyDigest(KeyPrefix + "0000000000000000_" + strings.Repeat("0", keySecretLen))

// Authenticate returns the device a key belongs to. Malformed, unknown,
// wrong and revoked keys, and keys of devices whose owner is disabled, all
// return protocol.ErrUnauthorized with the same message.
func (r *Registry) Authenticate(ctx context.Context, key string) (*unhidra.Device, error) {
	bad := unhidra.Errorf(protocol.ErrUnauthorized, "Invalid device key.")
	keyID, ok := parseKey(key)
	if !ok {
		return nil, bad
	}
	d, err := r.Store.DeviceByKeyID(ctx, keyID)
	switch {
	case unhidra.ErrorCode(err) == protocol.ErrNotFound:
		digestsEqual(keyDigest(key), dummyDigest)
		return nil, bad
	case err != nil:
		return nil, fmt.Errorf("look up device key: %w", err)
	}
	if !digestsEqual(keyDigest(key), d.KeyHash) || d.Revoked() {
		return nil, bad
	}
	owner, err := r.Store.UserByID(ctx, d.OwnerID)
	if err != nil {
		return nil, fmt.Errorf("look up device owner: %w", err)
	}
	if owner.Disabled {
		return nil, bad
	}
	return d, nil
}

func (r *Registry) audit(ctx context.Context, actor *unhidra.User, action, target string, detail map[string]any) {
	e := &unhidra.AuditEvent{Action: action, Target: target}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Name
	}
	if detail != nil {
		b, _ := json.Marshal(detail)
		e.Detail = string(b)
	}
	// The change itself succeeded; a lost audit entry must not undo it.
	if err := r.Store.AppendAudit(ctx, e); err != nil && r.Log != nil {
		r.Log.Error("device audit event lost", "action", action, "device", target, "err", err)
	}
}

// LookupIdentity returns a device's name and owner and whether it was
// revoked, or an error with code protocol.ErrNotFound for an ID that names
// no device (other services, e.g. messaging, resolve members through it).
func (s *Service) LookupIdentity(ctx context.Context, id string) (name, owner string, revoked bool, err error) {
	d, err := s.store.DeviceByID(ctx, id)
	if err != nil {
		return "", "", false, err
	}
	return d.Name, d.OwnerID, d.Revoked(), nil
}

// Manages reports whether id is a device ID (by its form, without a
// lookup): messaging keeps devices out of presence with it.
func (s *Service) Manages(id string) bool { return strings.HasPrefix(id, unhidra.PrefixDevice+"_") }

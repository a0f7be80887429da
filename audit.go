package unhidra

import (
	"time"
)

// Audit actions. The list grows with the product; names are dotted,
// subject first.
const (
	AuditUserRegistered   = "user.registered"
	AuditUserCreated      = "user.created"
	AuditUserDisabled     = "user.disabled"
	AuditUserEnabled      = "user.enabled"
	AuditUserBootstrapped = "user.bootstrapped"
	AuditUserRoleChanged  = "user.role_changed"
	AuditDevicesSuspended = "user.devices_suspended" // owner disabled: devices closed and refused
	AuditDevicesResumed   = "user.devices_resumed"
	AuditLoginSuccess     = "login.success"
	AuditLoginFailure     = "login.failure"
	AuditLoginLocked      = "login.locked"
	AuditPasswordChanged  = "password.changed"
	AuditPasswordReset    = "password.reset"
	AuditTokenRefreshed   = "token.refreshed"
	AuditTokenReuse       = "token.reuse_detected"
	AuditTokenRevoked     = "token.revoked"
	AuditSigningKeyRotate = "signing_key.rotated"
)

// AuditEvent is one entry of the durable audit log. Detail is a small JSON
// object; it never holds secrets.
type AuditEvent struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Action    string    `json:"action"`
	ActorID   string    `json:"actor_id,omitempty"`
	ActorName string    `json:"actor_name,omitempty"`
	Target    string    `json:"target,omitempty"`
	IP        string    `json:"ip,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

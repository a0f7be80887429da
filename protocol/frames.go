package protocol

import (
	"encoding/json"
	"time"
)

// Frame types.
const (
	// Client to server.
	TypePing        = "ping"
	TypeRefresh     = "refresh"
	TypeSend        = "send"
	TypeEdit        = "edit"
	TypeDelete      = "delete"
	TypeHistory     = "history"
	TypeResume      = "resume"
	TypeTyping      = "typing"
	TypePresence    = "presence"
	TypeHeartbeat   = "heartbeat"
	TypeTelemetry   = "telemetry"
	TypeCommandSend = "command.send"

	// Server to client.
	TypeWelcome             = "welcome"
	TypePong                = "pong"
	TypeAck                 = "ack"
	TypeError               = "error"
	TypeMessage             = "message"
	TypeRead                = "read"    // client: advance read positions
	TypeResumed             = "resumed" // one conversation's backlog
	TypeMessageEdited       = "message_edited"
	TypeMessageDeleted      = "message_deleted"
	TypeMemberJoined        = "member_joined"        // to the conversation
	TypeMemberLeft          = "member_left"          // to the conversation
	TypeConversationAdded   = "conversation_added"   // to the member added
	TypeConversationRemoved = "conversation_removed" // to the member removed
	TypeChannelUpdated      = "channel_updated"      // renamed or archived
	TypePresenceSnapshot    = "presence_snapshot"    // on connect
	TypeDeviceState         = "device_state"         // to a device's owner and followers
	TypeCommandStatus       = "command_status"       // to a device's owner
	TypeDeviceAlert         = "device_alert"         // an ML finding about a device, to its owner and followers

	// Server to device (what the seed firmware listens for); a device's own
	// acknowledgement of a command is an "ack" too.
	TypeCommand = "command"
	TypeConfig  = "config"
	TypeOTA     = "ota"
)

// Error codes of error frames.
const (
	ErrBadFrame     = "bad_frame"    // not JSON, no type, field of the wrong type
	ErrUnknownType  = "unknown_type" // a type this server does not handle
	ErrInvalid      = "invalid"      // well-formed but breaks a rule
	ErrRateLimited  = "rate_limited" // too many frames; slow down
	ErrForbidden    = "forbidden"    // not allowed for this identity
	ErrNotFound     = "not_found"    // no such conversation, message, device…
	ErrUnauthorized = "unauthorized" // e.g. a refresh with a bad token
	ErrUnavailable  = "unavailable"  // temporarily unable; retry
	ErrInternal     = "internal"     // the server failed
	ErrTooLarge     = "too_large"    // a field over its limit
	ErrConflict     = "conflict"     // e.g. a concurrent change
	ErrWrongDevice  = "wrong_device" // a heartbeat naming another device
)

// Limits is what the welcome frame tells a client about its connection.
type Limits struct {
	MaxFrameBytes      int     `json:"max_frame_bytes"`
	MessagesPerSecond  float64 `json:"messages_per_second"`
	Burst              int     `json:"burst"`
	MaxMessageBodyRune int     `json:"max_body_chars,omitempty"`
	// Devices only: at most CommandWindow commands are sent before the
	// device acknowledges some, and an ack's result may hold at most
	// MaxResultBytes bytes of JSON (a device truncates to it).
	CommandWindow  int `json:"command_window,omitempty"`
	MaxResultBytes int `json:"max_result_bytes,omitempty"`
	MaxErrorBytes  int `json:"max_error_bytes,omitempty"`
}

// Identity is who a connection belongs to, as the client sees it.
type Identity struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"` // "person", "bot" or "device"
}

// Welcome is the first frame on every connection.
type Welcome struct {
	Type              string    `json:"type"`
	Protocol          string    `json:"protocol"`
	Session           string    `json:"session"`
	Identity          Identity  `json:"identity"`
	ServerTime        time.Time `json:"server_time"`
	HeartbeatInterval int       `json:"heartbeat_interval"` // seconds: devices send heartbeats this often
	PingInterval      int       `json:"ping_interval"`      // seconds: the server pings this often
	IdleTimeout       int       `json:"idle_timeout"`       // seconds of silence before the server closes
	TokenExpiresAt    time.Time `json:"token_expires_at,omitzero"`
	Limits            Limits    `json:"limits"`
}

// ErrorFrame answers a frame that failed.
type ErrorFrame struct {
	Type       string `json:"type"`
	ID         string `json:"id,omitempty"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"` // seconds
}

// NewError builds an error frame.
func NewError(id, code, message string) ErrorFrame {
	return ErrorFrame{Type: TypeError, ID: id, Code: code, Message: message}
}

// Marshal encodes a server frame. Server frames are our own structs, so an
// encoding failure is a programming error.
func Marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: cannot encode " + err.Error())
	}
	return b
}

// Reasons a "resumed" frame gives when it could not recover a
// conversation's backlog.
const (
	ResumeNotMember   = "not_member"  // the client is not (or no longer) a member
	ResumeTooMany     = "too_many"    // more messages are missing than one resume sends: page through history
	ResumeTooLarge    = "too_large"   // the backlog would exceed the reply's byte budget: page through history
	ResumeUnavailable = "unavailable" // the stored backlog could not be read: page through history
)

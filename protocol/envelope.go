package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Subprotocol is the WebSocket subprotocol of this version.
const Subprotocol = "unhidra.v1"

// BearerPrefix starts the second subprotocol a browser offers to carry its
// access token ("bearer.<token>"): browsers cannot set an Authorization
// header on a WebSocket. Other clients use the header.
const BearerPrefix = "bearer."

// Limits on client frames, checked before any work is done with them.
const (
	MaxIDLen   = 64 // a client's request id
	MaxTypeLen = 32
)

// Envelope is a decoded client frame. Every frame is a JSON object with a
// "type"; "id", when present, is echoed in the ack or error that answers it.
// The remaining fields are those of the frame types clients send: one flat
// struct, decoded once, so a frame costs one pass of the JSON decoder.
// Unknown fields are ignored (newer clients may send more).
type Envelope struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`

	// Messaging.
	Channel   string           `json:"channel,omitempty"`
	To        string           `json:"to,omitempty"`
	Body      string           `json:"body,omitempty"`
	MessageID string           `json:"message_id,omitempty"`
	Before    *int64           `json:"before,omitempty"`
	After     *int64           `json:"after,omitempty"`
	Limit     int              `json:"limit,omitempty"`
	Positions map[string]int64 `json:"positions,omitempty"` // resume: conversation → last seq seen
	Status    string           `json:"status,omitempty"`    // presence: "online" | "away"
	Token     string           `json:"token,omitempty"`     // refresh: a new access token

	// Devices (the seed firmware's heartbeat, telemetry and command acks).
	DeviceID  string          `json:"device_id,omitempty"`
	TS        *float64        `json:"ts,omitempty"`
	Timestamp *float64        `json:"timestamp,omitempty"`
	FreeHeap  *float64        `json:"free_heap,omitempty"`
	Readings  json.RawMessage `json:"readings,omitempty"`
	Device    string          `json:"device,omitempty"`
	Command   string          `json:"command,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	// command.send only: "command" (default), "config" or "ota", and how
	// long a command may wait for an offline device.
	CommandType string          `json:"command_type,omitempty"`
	TTLSeconds  int             `json:"ttl_seconds,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	OK          *bool           `json:"ok,omitempty"`
	Truncated   bool            `json:"truncated,omitempty"` // ack: the device cut its result to the limit
}

// ErrDecode is wrapped by every Decode error.
var ErrDecode = errors.New("invalid frame")

// Decode parses a client frame: a single JSON object with a non-empty type
// of at most MaxTypeLen bytes and an id of at most MaxIDLen. The frame has
// already passed the transport's size limit.
func Decode(data []byte) (*Envelope, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrDecode)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrDecode)
	}
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDecode, jsonProblem(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrDecode)
	}
	switch {
	case e.Type == "":
		return nil, fmt.Errorf("%w: missing \"type\"", ErrDecode)
	case len(e.Type) > MaxTypeLen:
		return nil, fmt.Errorf("%w: \"type\" too long", ErrDecode)
	case len(e.ID) > MaxIDLen:
		return nil, fmt.Errorf("%w: \"id\" longer than %d bytes", ErrDecode, MaxIDLen)
	}
	return &e, nil
}

// jsonProblem describes a JSON error without echoing input back.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

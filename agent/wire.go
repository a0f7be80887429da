package agent

import (
	"encoding/json"

	"github.com/unhidra/unhidra/protocol"
)

// Terminal reports whether a close code means "do not reconnect":
// 4500–4999 (revoked key, bad credentials, kicked…) and 1008 (policy).
func Terminal(code int) bool { return !protocol.Reconnectable(code) }

// welcome is the server's first frame (the fields the agent uses).
type welcome struct {
	Type     string          `json:"type"`
	Session  json.RawMessage `json:"session"`
	Identity struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"identity"`
	// Informational fields are kept raw: a value of an unexpected type
	// falls back to the defaults instead of failing the connection.
	HeartbeatInterval json.RawMessage `json:"heartbeat_interval"`
	PingInterval      json.RawMessage `json:"ping_interval"`
	IdleTimeout       json.RawMessage `json:"idle_timeout"`
	Limits            struct {
		CommandWindow  json.RawMessage `json:"command_window"`
		MaxResultBytes json.RawMessage `json:"max_result_bytes"`
		MaxErrorBytes  json.RawMessage `json:"max_error_bytes"`
	} `json:"limits"`
}

// seconds reads a JSON number of seconds; anything else is 0.
func seconds(raw json.RawMessage) float64 {
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		return 0
	}
	return f
}

// inbound is any later server frame (the fields the agent uses).
type inbound struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Command string          `json:"command"`
	Params  json.RawMessage `json:"params"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// heartbeat is the seed firmware's heartbeat frame.
type heartbeat struct {
	Type     string `json:"type"`
	DeviceID string `json:"device_id"`
	TS       int64  `json:"ts"`
	FreeHeap uint64 `json:"free_heap"`
}

// ack answers a command.
type ack struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	// Truncated says the result was cut to the server's max_result_bytes.
	Truncated bool `json:"truncated,omitempty"`
}

// telemetry carries readings.
type telemetry struct {
	Type     string          `json:"type"`
	Readings json.RawMessage `json:"readings"`
}

// Package gateway is the WebSocket entry point, GET /ws: it authenticates
// the opening handshake (credentials travel only in Sec-WebSocket-Protocol),
// applies admission limits before upgrading, keeps per-connection state
// (identity, message rate, token expiry), dispatches client frames to the
// handlers other packages register by frame type, lists live connections
// for administrators, and drains connections gradually on shutdown.
//
// The transport (framing, keepalive, outbound queues) is internal/ws; the
// routing of messages to connections is internal/hub.
package gateway

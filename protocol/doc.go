// Package protocol is Unhidra's WebSocket wire protocol, version 1
// ("unhidra.v1"), in one place: the JSON envelope every frame uses, the
// frame types, the error codes of error frames, and the close codes with
// their meaning (4000–4499: reconnect; 4500–4999: do not). docs/protocol.md
// is its prose description; the two must agree.
package protocol

// Package ws is Unhidra's server-side WebSocket transport (RFC 6455): the
// opening handshake, an incremental frame codec, and an Engine that serves
// many mostly idle connections with little memory each.
//
// See docs/ws-transport.md for the design and the reasons behind it.
package ws

// Package agent is the Unhidra device agent: it keeps one authenticated
// WebSocket connection from a device to an Unhidra server, speaking the seed
// ESP32 firmware's protocol, so a Linux device (or a Go program embedding
// this package) behaves exactly like the firmware.
//
// Behaviour, in short:
//   - It dials wss://HOST/ws offering the device API key as the whole
//     Sec-WebSocket-Protocol header (or "<key>, unhidra.v1" with
//     Config.OfferSubprotocol). The key never appears in the URL or in logs.
//   - The server's first frame must be a welcome; the device id defaults to
//     the welcome's identity id.
//   - It sends a heartbeat ({"type":"heartbeat","device_id","ts","free_heap"})
//     at once and then every heartbeat interval, pings every ping interval,
//     and drops a connection that has been silent for the dead-link timeout.
//   - It answers command, config and ota frames with ack frames, through
//     handlers registered with Agent.Handle, built-in handlers, or an
//     external program (Config.CommandHook).
//   - It reconnects with exponential backoff and jitter, honours Retry-After
//     on refused handshakes, and stops for good on close codes 4500–4999
//     (and 1008) or a refused key, returning a *TerminalError.
//
// The package depends only on the standard library and
// github.com/coder/websocket, so it builds for small Linux targets
// (arm, arm64, mipsle, riscv64) with CGO_ENABLED=0.
package agent

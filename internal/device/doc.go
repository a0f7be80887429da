// Package device is the server side of devices: the registry (API keys
// issued once, stored as SHA-256 digests, looked up by a public key ID and
// compared in constant time), the handshake authenticator, the health state
// machine (online, stale, offline) with reboot detection, the downsampled
// free-heap series, bounded telemetry, and the command queue.
//
// Heartbeats arrive from thousands of devices, so the Service keeps the
// live state in memory and writes it in batches (one transaction per
// FlushInterval). The state machine reads its clock from Config.Now, so
// tests drive transitions by moving a fake clock and calling Sweep.
//
// Device frames and endpoints are documented in docs/protocol-devices.md.
package device

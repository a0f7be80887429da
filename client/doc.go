// Package client is the Go client of an Unhidra server, shared by the
// terminal chat (`unhidra chat`), the load tools and the tests.
//
// A Client signs in over HTTPS, keeps its access token fresh, and holds one
// WebSocket connection that it re-establishes after any drop with
// exponential backoff and jitter. On reconnecting it asks for what it
// missed since the last sequence number it saw in each conversation, and it
// de-duplicates by (conversation, seq), so the application sees every
// message once, in order. Sends carry a client id and are retried with the
// same id until acknowledged; the server stores a retried send only once.
package client

// Package unhidra is the application's domain vocabulary: the entities
// (users, conversations, messages, devices, commands, audit events), their
// limits and ID scheme, and Error, the one application error every layer
// speaks. Its error codes are the wire protocol's (package protocol), so a
// code means the same thing in a Go error, an HTTP response and an error
// frame.
//
// It imports only the standard library and protocol. Persistence lives under
// internal/store; services live in internal/<domain>.
package unhidra

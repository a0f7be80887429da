// Package auth is identity for Unhidra: Argon2id password hashing under a
// concurrency bound, JWT access tokens with rotating signing keys,
// refresh-token rotation with reuse detection, login throttling and
// lockout, and the account service that ties them to the store and the
// audit log.
package auth

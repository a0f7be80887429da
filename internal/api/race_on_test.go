//go:build race

package api_test

// raceDetector: the race detector slows Argon2 and SQLite several times
// over; wall-clock bounds are widened under it.
const raceDetector = true

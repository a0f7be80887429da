//go:build race

package main

// raceEnabled: wall-clock bounds are asserted only without the race
// detector (make test-timing), which multiplies CPU costs several times.
const raceEnabled = true

package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every goroutine the server starts (gateway, device
// service, HTTP server) is gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Test clients' idle keep-alive connections belong to net/http's
		// transport, not to the server.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

package gateway_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql keeps a connection opener per pool until Close; pools
		// are closed in Cleanup, but the modernc driver's finalizer
		// goroutine may linger.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

package wsbench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/ws/wsbench"
)

const clientEnv = "WSBENCH_CLIENT_ARGS"

func TestMain(m *testing.M) {
	// Re-executed as the client process.
	if args := os.Getenv(clientEnv); args != "" {
		cc, err := wsbench.ParseClientArgs(strings.Fields(args))
		if err == nil {
			err = wsbench.RunClient(cc, os.Stdin, os.Stdout)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func startClient(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+strings.Join(args, " "))
	return cmd
}

// TestMeasureIdle runs the measurement at a small scale (the figures in
// docs/benchmarks.md come from wsmeasure at 10,000). The bounds are loose
// regression guards, but the goroutine count is exact in kind: the Engine
// must not hold a goroutine per idle connection, while the baseline does.
func TestMeasureIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a client process")
	}
	const n = 300
	for _, tc := range []struct {
		server       wsbench.Server
		tls          bool
		maxHeapStack float64 // bytes per connection
	}{
		// Typically 2.6–3.2 KiB here; one CI run under load saw 4.7 KiB.
		// A goroutine per connection alone would cost 8 KiB of stack.
		{wsbench.ServerEngine, false, 6 << 10},
		{wsbench.ServerEngine, true, 16 << 10},
		{wsbench.ServerCoder, false, 1 << 20},
	} {
		t.Run(fmt.Sprintf("%s-tls=%v", tc.server, tc.tls), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := wsbench.MeasureIdle(ctx, wsbench.MeasureConfig{
				Conns: n, TLS: tc.tls, Server: tc.server, Settle: 300 * time.Millisecond, StartClient: startClient,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if res.Delivered != n {
				t.Fatalf("only %d of %d connections alive", res.Delivered, n)
			}
			switch tc.server {
			case wsbench.ServerEngine:
				if res.GoroutinesPerConn > 0.05 {
					t.Fatalf("%.2f goroutines per idle connection", res.GoroutinesPerConn)
				}
			case wsbench.ServerCoder:
				if res.GoroutinesPerConn < 0.9 {
					t.Fatalf("baseline shows %.2f goroutines per connection: the measurement is broken", res.GoroutinesPerConn)
				}
			}
			if res.HeapStackPerConn > tc.maxHeapStack {
				t.Fatalf("%.0f bytes of heap and stack per idle connection, over %.0f", res.HeapStackPerConn, tc.maxHeapStack)
			}
		})
	}
}

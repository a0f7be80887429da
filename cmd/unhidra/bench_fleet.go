package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/internal/fleet"
)

// runBenchFleet is `unhidra bench fleet`.
func runBenchFleet(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("bench-fleet", "bench fleet -n N --url wss://HOST/ws --keys-file FILE --duration D [flags]", e.stderr)
	n := fs.Int("n", 100, "number of simulated devices (at most 19000 per process)")
	url := fs.String("url", "", "server WebSocket URL (required)")
	keysFile := fs.String("keys-file", "", "file with one device key per line, not world-readable (required)")
	duration := fs.Duration("duration", time.Minute, "how long to run")
	heartbeat := fs.Duration("heartbeat-interval", 60*time.Second, "heartbeat interval of each device")
	ping := fs.Duration("ping-interval", 30*time.Second, "ping interval of each device")
	ramp := fs.Int("ramp", 200, "devices started per second")
	maxDialing := fs.Int("max-dialing", 256, "handshakes in flight at most")
	report := fs.Duration("report-every", 10*time.Second, "progress report period")
	sources := fs.String("source-addrs", "", "comma-separated local addresses to spread connections over (default: 127.0.0.x per 8000 devices for a loopback server)")
	caFile := fs.String("ca-file", "", "PEM CA certificates to trust")
	pin := fs.String("pin-sha256", "", "SHA-256 fingerprint of the server certificate")
	fullJitter := fs.Bool("full-jitter", false, "full-jitter reconnect backoff")
	bInit := fs.Duration("backoff-initial", agent.DefaultBackoffInitial, "first reconnect delay (the firmware's 5 s)")
	bMax := fs.Duration("backoff-max", agent.DefaultBackoffMax, "reconnect delay cap (the firmware's 60 s)")
	fault := fs.String("fault", "", "simulate a broken firmware (for `device check`): wrong-handshake, late-heartbeats, no-backoff or reconnect-after-4501")
	fs.String("config", "", "config file")
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	if *url == "" || *keysFile == "" {
		return usagef("--url and --keys-file are required")
	}
	if !fleet.ValidFault(*fault) {
		return usagef("--fault: unknown fault %q", *fault)
	}
	if err := durationRange("backoff-initial", *bInit, 10*time.Millisecond, 10*time.Minute); err != nil {
		return err
	}
	if err := durationRange("backoff-max", *bMax, *bInit, time.Hour); err != nil {
		return err
	}
	if err := intRange("n", *n, 1, fleet.MaxDevices); err != nil {
		return err
	}
	if err := raiseOpenFiles(*n + 256); err != nil {
		return err
	}
	keys, err := fleet.ReadKeys(*keysFile)
	if err != nil {
		return usagef("%v", err)
	}
	opts := fleet.Options{
		URL: *url, Keys: keys, Devices: *n, Duration: *duration,
		HeartbeatInterval: *heartbeat, PingInterval: *ping, Ramp: *ramp, MaxDialing: *maxDialing,
		ReportEvery: *report, Backoff: agent.Backoff{FullJitter: *fullJitter, Initial: *bInit, Max: *bMax}, Fault: *fault, Out: e.stdout,
	}
	if *sources != "" {
		for _, s := range strings.Split(*sources, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return usagef("--source-addrs: %v", err)
			}
			opts.SourceAddrs = append(opts.SourceAddrs, a)
		}
	}
	if *caFile != "" {
		if opts.RootCAs, err = agent.LoadCAFile(*caFile); err != nil {
			return usagef("%v", err)
		}
	}
	if *pin != "" {
		if opts.PinSHA256, err = agent.ParsePin(*pin); err != nil {
			return usagef("--pin-sha256: %v", err)
		}
	}
	fmt.Fprintf(e.stdout, "fleet: %d devices → %s for %v\n", *n, *url, *duration)
	if _, err := fleet.Run(ctx, opts); err != nil {
		return usagef("%v", err)
	}
	return nil
}

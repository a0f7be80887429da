package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/unhidra/unhidra/internal/devicecheck"
)

// runDevice is `unhidra device …`.
func runDevice(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		return usagef("usage: unhidra device check [flags] (see docs/device-check.md)")
	}
	return runDeviceCheck(ctx, e, args[1:])
}

// errCheckFailed makes `device check` exit 1 when a required rule failed.
var errCheckFailed = errors.New("device check: required rules did not pass")

// runDeviceCheck is `unhidra device check`: a probe endpoint the device
// under test connects to; it prints one line per rule (or JSON) and exits
// 0 only when every required rule passed.
func runDeviceCheck(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("device-check", "device check [--listen HOST:PORT] [--fast] [--json] [flags]", e.stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "address of the probe endpoint (wss://ADDR/ws)")
	fast := fs.Bool("fast", false, "short schedule (5 s heartbeats and pings, told in welcome) for devices that honour the welcome's intervals")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	hb := fs.Duration("heartbeat-interval", 0, "heartbeat interval told in welcome and checked (default 60 s; 5 s with --fast)")
	ping := fs.Duration("ping-interval", 0, "ping interval told in welcome and checked (default 30 s; 5 s with --fast)")
	beats := fs.Int("heartbeats", 3, "heartbeat intervals observed")
	bInit := fs.Duration("backoff-initial", 5*time.Second, "expected first reconnect delay")
	bMax := fs.Duration("backoff-max", 60*time.Second, "expected reconnect delay cap")
	disc := fs.Int("disconnects", 5, "forced closes (at least 5)")
	cmdTimeout := fs.Duration("command-timeout", 10*time.Second, "an ack must come within this")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for the device's first connection")
	certOut := fs.String("cert-out", "", "write the probe's certificate (PEM) here, for the device to trust")
	deviceID := fs.String("device-id", "dev_check", "device id told in welcome (configure the firmware with it)")
	fs.String("config", "", "config file")
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	if *fast {
		if *hb == 0 {
			*hb = 5 * time.Second
		}
		if *ping == 0 {
			*ping = 5 * time.Second
		}
	}
	for name, d := range map[string]time.Duration{"heartbeat-interval": *hb, "ping-interval": *ping} {
		if d != 0 {
			if err := durationRange(name, d, 100*time.Millisecond, time.Hour); err != nil {
				return err
			}
		}
	}
	if err := intRange("disconnects", *disc, 5, 20); err != nil {
		return err
	}
	if err := intRange("heartbeats", *beats, 2, 100); err != nil {
		return err
	}
	if err := durationRange("backoff-initial", *bInit, 10*time.Millisecond, 10*time.Minute); err != nil {
		return err
	}
	if err := durationRange("backoff-max", *bMax, *bInit, time.Hour); err != nil {
		return err
	}
	p, err := devicecheck.Start(devicecheck.Config{Listen: *listen, DeviceID: *deviceID, HeartbeatInterval: *hb, PingInterval: *ping,
		Heartbeats: *beats, CommandTimeout: *cmdTimeout, BackoffInitial: *bInit, BackoffMax: *bMax, Disconnects: *disc,
		Wait: *wait, Log: e.stderr})
	if err != nil {
		return usagef("device check: %v", err)
	}
	defer p.Close()
	if *certOut != "" {
		if err := os.WriteFile(*certOut, p.CertPEM, 0o644); err != nil {
			return fmt.Errorf("write the certificate: %w", err)
		}
	}
	// The key is a throwaway made for this run: printing it is the point.
	fmt.Fprintf(e.stderr, "device check: probe at %s\n  test key:    %s\n  device id:   %s\n  certificate: SHA-256 %s%s\n",
		p.URL, p.Key, *deviceID, p.Fingerprint(), map[bool]string{true: " (PEM in " + *certOut + ")", false: ""}[*certOut != ""])
	rep := p.Run(ctx)
	if *asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		for _, r := range rep.Rules {
			req := "required"
			if !r.Required {
				req = "optional"
			}
			fmt.Fprintf(e.stdout, "%-12s %-28s %-8s %s (expected: %s)\n", map[string]string{devicecheck.Pass: "PASS",
				devicecheck.Fail: "FAIL", devicecheck.NotObserved: "NOT OBSERVED"}[r.Result], r.Name, req, orDash(r.Measured), r.Expected)
		}
	}
	if !rep.Passed {
		return errCheckFailed
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

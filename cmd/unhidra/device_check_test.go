package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/devicecheck"
)

// checkRun is one `unhidra device check --json` run on a short schedule,
// with device(url, key, certFile) connecting to it.
func checkRun(t *testing.T, device func(ctx context.Context, url, key, cert string) error) (*devicecheck.Report, error) {
	t.Helper()
	return checkRunWith(t, []string{"--heartbeat-interval", "2s", "--ping-interval", "2s"}, device)
}

// checkRunWith is checkRun with the schedule flags given (the backoff is
// always the short one: the reconnect rule alone would take minutes).
func checkRunWith(t *testing.T, schedule []string, device func(ctx context.Context, url, key, cert string) error) (*devicecheck.Report, error) {
	t.Helper()
	dir := t.TempDir()
	cert := filepath.Join(dir, "probe.pem")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		args := append([]string{"unhidra", "device", "check", "--json", "--listen", "127.0.0.1:0", "--cert-out", cert,
			"--heartbeats", "2", "--backoff-initial", "300ms", "--backoff-max", "1200ms", "--wait", "30s"}, schedule...)
		done <- run(ctx, args, envFrom(nil), strings.NewReader(""), &stdout, &stderr)
	}()
	var url, key string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" || key == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the probe did not print its address and key:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
		out := stderr.String()
		if m := regexp.MustCompile(`probe at (wss://\S+)`).FindStringSubmatch(out); m != nil {
			url = m[1]
		}
		if m := regexp.MustCompile(`test key:\s+(\S+)`).FindStringSubmatch(out); m != nil {
			key = m[1]
		}
	}
	dctx, dcancel := context.WithCancel(ctx)
	ddone := make(chan error, 1)
	go func() { ddone <- device(dctx, url, key, cert) }()
	err := <-done
	dcancel()
	<-ddone
	var rep devicecheck.Report
	if jerr := json.Unmarshal([]byte(stdout.String()), &rep); jerr != nil {
		t.Fatalf("report is not JSON: %v\n%s\n%s", jerr, stdout.String(), stderr.String())
	}
	t.Logf("report: %s", stdout.String())
	return &rep, err
}

// failing returns the names of the rules that did not pass.
func failing(rep *devicecheck.Report) []string {
	var out []string
	for _, r := range rep.Rules {
		if r.Result != devicecheck.Pass {
			out = append(out, r.Name+"="+r.Result)
		}
	}
	return out
}

func fleetDevice(fault string) func(ctx context.Context, url, key, cert string) error {
	return func(ctx context.Context, url, key, cert string) error {
		keys := filepath.Join(filepath.Dir(cert), "keys")
		if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
			return err
		}
		args := []string{"unhidra", "bench", "fleet", "-n", "1", "--url", url, "--keys-file", keys, "--ca-file", cert,
			"--duration", "2m", "--heartbeat-interval", "2s", "--ping-interval", "2s",
			"--backoff-initial", "300ms", "--backoff-max", "1200ms", "--report-every", "1m"}
		if fault != "" {
			args = append(args, "--fault", fault)
		}
		var out syncBuffer
		return run(ctx, args, envFrom(nil), strings.NewReader(""), &out, &out)
	}
}

// TestDeviceCheck: the Go agent and the fleet's seed-firmware simulation
// pass every rule (exit status 0); each deliberately broken firmware fails
// exactly the rule it breaks (exit status 1).
func TestDeviceCheck(t *testing.T) {
	t.Run("go agent", func(t *testing.T) {
		rep, err := checkRun(t, func(ctx context.Context, url, key, cert string) error {
			var out syncBuffer
			return run(ctx, []string{"unhidra", "agent", "--url", url, "--ca-file", cert, "--ping-interval", "2s",
				"--backoff-initial", "300ms", "--backoff-max", "1200ms"},
				envFrom(map[string]string{"UNHIDRA_DEVICE_KEY": key}), strings.NewReader(""), &out, &out)
		})
		if err != nil || !rep.Passed || len(failing(rep)) != 0 {
			t.Fatalf("go agent: err %v, failing %v", err, failing(rep))
		}
	})
	t.Run("go agent, --fast, intervals from welcome only", func(t *testing.T) {
		// --fast tells 5 s heartbeats and pings in welcome; an agent started
		// with no interval flags must follow them and pass.
		rep, err := checkRunWith(t, []string{"--fast"}, func(ctx context.Context, url, key, cert string) error {
			var out syncBuffer
			return run(ctx, []string{"unhidra", "agent", "--url", url, "--ca-file", cert,
				"--backoff-initial", "300ms", "--backoff-max", "1200ms"},
				envFrom(map[string]string{"UNHIDRA_DEVICE_KEY": key}), strings.NewReader(""), &out, &out)
		})
		if err != nil || !rep.Passed || len(failing(rep)) != 0 {
			t.Fatalf("go agent --fast: err %v, failing %v", err, failing(rep))
		}
		for _, r := range rep.Rules {
			if r.Name == "heartbeat_cadence" && !strings.Contains(r.Expected, "5s") {
				t.Fatalf("--fast did not check a 5 s heartbeat: %+v", r)
			}
		}
	})
	t.Run("seed firmware simulation", func(t *testing.T) {
		rep, err := checkRun(t, fleetDevice(""))
		if err != nil || !rep.Passed || len(failing(rep)) != 0 {
			t.Fatalf("seed simulation: err %v, failing %v", err, failing(rep))
		}
	})
	for fault, rule := range map[string]string{
		"wrong-handshake":      "handshake",
		"late-heartbeats":      "heartbeat_cadence",
		"no-backoff":           "reconnect_backoff",
		"reconnect-after-4501": "no_reconnect_after_terminal",
	} {
		t.Run(fault, func(t *testing.T) {
			rep, err := checkRun(t, fleetDevice(fault))
			if !errors.Is(err, errCheckFailed) || rep.Passed {
				t.Fatalf("%s: err %v, passed %v", fault, err, rep.Passed)
			}
			if got := failing(rep); len(got) != 1 || got[0] != rule+"=fail" {
				t.Fatalf("%s: failing rules %v, want exactly %s", fault, got, rule)
			}
		})
	}
}

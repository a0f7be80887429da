// Package agentcli is the command line of the device agent, shared by the
// slim cmd/unhidra-agent binary and the `unhidra agent` subcommand so both
// accept the same flags, environment variables and config file.
//
// Settings come from flags, then UNHIDRA_<FLAG_NAME> variables, then the
// "key = value" file named by --config (UNHIDRA_CONFIG), the same rule as
// cmd/unhidra. The device key is deliberately not a flag (command lines
// are visible in ps): it comes from UNHIDRA_DEVICE_KEY or --key-file.
package agentcli

import (
	"github.com/unhidra/unhidra/internal/cliconf"

	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/unhidra/unhidra/agent"
)

// KeyEnv is the environment variable holding the device key.
const KeyEnv = "UNHIDRA_DEVICE_KEY"

// UsageError marks errors in the command line or configuration.
type UsageError = cliconf.UsageError

func usagef(format string, args ...any) error { return cliconf.Usagef(format, args...) }

// Flags are the agent's settings as parsed from the command line.
type Flags struct {
	fs *flag.FlagSet

	URL, KeyFile, DeviceID, CAFile, Pin        string
	Subprotocol, FullJitter, AllowReboot       bool
	Heartbeat, Ping, DeadAfter, StableAfter    time.Duration
	BackoffInitial, BackoffMax                 time.Duration
	Jitter                                     float64
	Hook                                       string
	CommandTimeout                             time.Duration
	MaxOutput                                  int
	TelemetryEvery                             time.Duration
	TelemetryCmd, TelemetryFile, RebootCommand string
	LogLevel, Config                           string
}

// Define declares the agent's flags on fs.
func Define(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.URL, "url", "", "server WebSocket URL, wss://HOST/ws (required)")
	fs.StringVar(&f.KeyFile, "key-file", "", "file holding the device key (not world-readable); or set "+KeyEnv)
	fs.StringVar(&f.DeviceID, "device-id", "", "device_id sent in heartbeats (default: the id the server assigns)")
	fs.BoolVar(&f.Subprotocol, "subprotocol", false, `offer "<key>, unhidra.v1" instead of the key alone`)
	fs.StringVar(&f.CAFile, "ca-file", "", "PEM CA certificates to trust instead of the system roots")
	fs.StringVar(&f.Pin, "pin-sha256", "", "SHA-256 fingerprint of the server certificate (AA:BB:… or hex)")
	fs.DurationVar(&f.Heartbeat, "heartbeat-interval", 0, "heartbeat interval (default: the server's, else 60s)")
	fs.DurationVar(&f.Ping, "ping-interval", 0, "WebSocket ping interval (default: the server's, else 30s)")
	fs.DurationVar(&f.DeadAfter, "dead-after", 0, "drop a connection silent this long (default 2×ping interval)")
	fs.DurationVar(&f.BackoffInitial, "backoff-initial", agent.DefaultBackoffInitial, "first reconnect delay")
	fs.DurationVar(&f.BackoffMax, "backoff-max", agent.DefaultBackoffMax, "reconnect delay cap")
	fs.Float64Var(&f.Jitter, "backoff-jitter", agent.DefaultJitter, "relative reconnect jitter (0 = none, 0.3 = ±30%)")
	fs.BoolVar(&f.FullJitter, "full-jitter", false, "draw reconnect delays uniformly from [0, delay)")
	fs.DurationVar(&f.StableAfter, "stable-after", agent.DefaultStableAfter, "connection age that resets the backoff")
	fs.StringVar(&f.Hook, "command-hook", "", "absolute path of a program run for unknown commands")
	fs.DurationVar(&f.CommandTimeout, "command-timeout", agent.DefaultCommandTimeout, "time limit of each command")
	fs.IntVar(&f.MaxOutput, "max-output-bytes", agent.DefaultMaxOutputBytes, "output limit of hook and telemetry programs")
	fs.DurationVar(&f.TelemetryEvery, "telemetry-interval", 0, "send telemetry this often (0: off)")
	fs.StringVar(&f.TelemetryCmd, "telemetry-command", "", "absolute path of a program printing a JSON object of readings")
	fs.StringVar(&f.TelemetryFile, "telemetry-file", "", "file holding a JSON object of readings")
	fs.BoolVar(&f.AllowReboot, "allow-reboot", false, "let the server reboot this device with the reboot command")
	fs.StringVar(&f.RebootCommand, "reboot-command", "/sbin/reboot", "program run (without a shell) to reboot")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.Config, "config", "", "config file of key = value lines (flag names as keys)")
	return f
}

// AgentConfig turns the flags and the environment into an agent.Config.
func (f *Flags) AgentConfig(getenv func(string) string, stderr io.Writer) (agent.Config, error) {
	var c agent.Config
	if f.fs.NArg() > 0 {
		return c, usagef("unexpected argument %q", f.fs.Arg(0))
	}
	if f.URL == "" {
		return c, usagef("--url is required (wss://HOST/ws)")
	}
	envKey := getenv(KeyEnv)
	switch {
	case f.KeyFile != "" && envKey != "":
		return c, usagef("both %s and --key-file are set; use one", KeyEnv)
	case f.KeyFile != "":
		k, err := agent.LoadKeyFile(f.KeyFile)
		if err != nil {
			return c, usagef("%v", err)
		}
		c.Key = k
	case envKey != "":
		c.Key = strings.TrimSpace(envKey)
	default:
		return c, usagef("no device key: set %s or --key-file", KeyEnv)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return c, usagef("--log-level: %v", err)
	}
	c.URL, c.DeviceID, c.OfferSubprotocol = f.URL, f.DeviceID, f.Subprotocol
	c.HeartbeatInterval, c.PingInterval, c.DeadAfter, c.StableAfter = f.Heartbeat, f.Ping, f.DeadAfter, f.StableAfter
	c.Backoff = agent.Backoff{Initial: f.BackoffInitial, Max: f.BackoffMax, Jitter: f.Jitter, FullJitter: f.FullJitter}
	if f.Jitter == 0 {
		c.Backoff.Jitter = -1 // the flag's 0 means none; the Config's 0 means the default
	}
	if f.Jitter < 0 || f.Jitter > 1 {
		return c, usagef("--backoff-jitter must be between 0 and 1")
	}
	c.CommandHook, c.CommandTimeout, c.MaxOutputBytes = f.Hook, f.CommandTimeout, f.MaxOutput
	c.TelemetryInterval, c.TelemetryCommand, c.TelemetryFile = f.TelemetryEvery, f.TelemetryCmd, f.TelemetryFile
	if f.CAFile != "" {
		pool, err := agent.LoadCAFile(f.CAFile)
		if err != nil {
			return c, usagef("%v", err)
		}
		c.RootCAs = pool
	}
	if f.Pin != "" {
		pin, err := agent.ParsePin(f.Pin)
		if err != nil {
			return c, usagef("--pin-sha256: %v", err)
		}
		c.PinSHA256 = pin
	}
	if f.AllowReboot {
		prog := f.RebootCommand
		c.AllowReboot = true
		c.Reboot = func(ctx context.Context) error {
			// Without the caller's context: the ack is out and the reboot
			// must not be cut short by the connection ending.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, prog)
			cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // never the key
			return cmd.Run()
		}
	}
	c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return c, nil
}

// Run parses args (without the program name) and runs the agent until
// ctx ends or the server ends the session for good.
func Run(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) error {
	f := Define(fs)
	if err := ParseFlags(fs, args, getenv); err != nil {
		return err
	}
	cfg, err := f.AgentConfig(getenv, stderr)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg)
	if err != nil {
		if errors.Is(err, agent.ErrConfig) {
			return usagef("%v", err)
		}
		return err
	}
	return a.Run(ctx)
}

// ParseFlags parses args into fs, then fills the flags the command line
// left unset from UNHIDRA_* variables and then from the config file.
func ParseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	return cliconf.Parse(fs, args, getenv)
}

// NewFlagSet returns a FlagSet whose usage lists each flag's variable.
func NewFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	return cliconf.NewFlagSet(name, synopsis, "The device key comes from "+KeyEnv+" or --key-file, never from a flag.", stderr)
}

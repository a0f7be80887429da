package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/unhidra/unhidra/protocol"
)

// Config configures an Agent. Every zero field means the documented default,
// so only URL and Key are required.
type Config struct {
	// URL is the server's WebSocket endpoint, wss://HOST[:PORT]/ws.
	// It must not carry a query or user info: credentials travel only in
	// the Sec-WebSocket-Protocol header.
	URL string
	// Key is the device API key (unhidra_dk_<id>_<secret>). It is sent only
	// in Sec-WebSocket-Protocol and redacted from every log line and error.
	Key string
	// OfferSubprotocol sends "<key>, unhidra.v1" instead of the key alone
	// (the seed firmware's form); the server then echoes unhidra.v1.
	OfferSubprotocol bool
	// DeviceID is the device_id heartbeats carry. Zero: the identity id of
	// the server's welcome.
	DeviceID string

	// HeartbeatInterval is how often heartbeats are sent. Zero: the
	// welcome's heartbeat_interval when it is between 1 s and 24 h, else 60 s.
	HeartbeatInterval time.Duration
	// PingInterval is how often the agent pings. Zero: the welcome's
	// ping_interval when it is between 1 s and 1 h, else 30 s.
	PingInterval time.Duration
	// DeadAfter is how long a connection may stay silent (no frame, no pong)
	// before it is dropped and redialled. Zero, or not above the ping
	// interval in force: 2× the ping interval in force.
	DeadAfter time.Duration
	// HandshakeTimeout bounds TCP+TLS+WebSocket handshake and the wait for
	// the welcome frame. Zero: 20 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each frame write. Zero: 10 s.
	WriteTimeout time.Duration
	// MaxFrameBytes bounds frames from the server. Zero: 64 KiB.
	MaxFrameBytes int64

	// Backoff is the reconnect schedule (zero: 5 s, ×2, 60 s cap, ±30 %).
	Backoff Backoff
	// StableAfter is how long a connection must last for the backoff to
	// start again from Backoff.Initial. Zero: 60 s.
	StableAfter time.Duration
	// MaxRetryAfter bounds how long a server's Retry-After can make the
	// agent wait. Zero: 15 min.
	MaxRetryAfter time.Duration
	// RetryUnauthorized keeps retrying when the server refuses the key at
	// the handshake (HTTP 401/403). By default that is terminal: a refused
	// key does not become valid by itself.
	RetryUnauthorized bool

	// RootCAs verifies the server's certificate. Nil: the system roots.
	RootCAs *x509.CertPool
	// PinSHA256 is the SHA-256 of the server's leaf certificate (see
	// ParsePin). When set, the leaf must match it. Without RootCAs the pin
	// replaces chain verification, which is how a device trusts a server's
	// self-signed certificate by its printed fingerprint.
	PinSHA256 []byte

	// CommandHook is an absolute path to a program run for commands that no
	// handler knows. It gets the command name as its only argument, the
	// params JSON on stdin and UNHIDRA_COMMAND, UNHIDRA_COMMAND_ID and
	// UNHIDRA_COMMAND_TYPE in a minimal environment (never the device key).
	// Exit status 0 acks ok with its stdout (JSON if it parses, else a
	// string) as the result; anything else acks ok:false.
	CommandHook string
	// CommandTimeout bounds each command, hook or handler. Zero: 30 s.
	CommandTimeout time.Duration
	// MaxOutputBytes bounds a hook's or telemetry program's stdout and a
	// handler's encoded result. Zero: 16 KiB.
	MaxOutputBytes int
	// MaxConcurrentCommands bounds commands running at once; more wait, up
	// to the server's command window, and past it are acked ok:false
	// ("busy") at once. Zero: 4.
	MaxConcurrentCommands int
	// AllowReboot enables the built-in "reboot" command, which acks and then
	// calls Reboot. Off by default: a server must not reboot a device unless
	// its owner opted in.
	AllowReboot bool
	// Reboot is called after the built-in reboot command was acked (not
	// when "reboot" is replaced with Agent.Handle). Nil with AllowReboot:
	// reboot is refused.
	Reboot func(ctx context.Context) error

	// TelemetryInterval enables telemetry frames this often, read from
	// TelemetryCommand's stdout or TelemetryFile (a JSON object). Zero: off.
	TelemetryInterval time.Duration
	// TelemetryCommand is an absolute path to a program printing a JSON object.
	TelemetryCommand string
	// TelemetryFile is a file holding a JSON object.
	TelemetryFile string

	// Uptime reports the heartbeat's ts. Nil: system uptime (/proc/uptime),
	// or the time since the agent started where that is unavailable.
	Uptime func() (time.Duration, error)
	// FreeMemory reports the heartbeat's free_heap in bytes. Nil: MemAvailable
	// from /proc/meminfo, or the Go runtime's idle heap elsewhere.
	FreeMemory func() (uint64, error)

	// Logger receives the agent's logs. Nil: slog.Default().
	Logger *slog.Logger
	// Clock drives the agent's schedule. Nil: the system clock.
	Clock Clock
	// Rand returns uniform values in [0, 1) for jitter. Nil: math/rand/v2.
	Rand func() float64
}

// Defaults of Config.
const (
	DefaultHeartbeatInterval = 60 * time.Second
	DefaultPingInterval      = 30 * time.Second
	DefaultHandshakeTimeout  = 20 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultMaxFrameBytes     = 64 << 10
	DefaultStableAfter       = 60 * time.Second
	DefaultMaxRetryAfter     = 15 * time.Minute
	DefaultCommandTimeout    = 30 * time.Second
	DefaultMaxOutputBytes    = 16 << 10
	DefaultMaxCommands       = 4
	// DefaultCommandWindow is how many commands may queue for a slot when
	// the server's welcome does not say (the server's default window).
	DefaultCommandWindow = 8
	// DefaultMaxResultBytes is the largest ack result sent when the
	// server's welcome does not say (the server's default).
	DefaultMaxResultBytes = 8192

	// Bounds of intervals, from any source (config, welcome, set-heartbeat).
	MinInterval = time.Second
	MaxInterval = 24 * time.Hour
	// MaxKeyBytes bounds a device key.
	MaxKeyBytes = 4096
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid agent configuration")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	if err := ValidateKey(c.Key); err != nil {
		return c, err
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil:
		return c, configErr("URL must be wss://HOST/ws")
	case u.Scheme != "wss":
		return c, configErr("URL scheme must be wss (plaintext would expose the key), got %q", u.Scheme)
	case u.Host == "":
		return c, configErr("URL has no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return c, configErr("URL must not carry user info, a query or a fragment")
	case len(c.URL) > 2048:
		return c, configErr("URL longer than 2048 bytes")
	}
	if c.DeviceID != "" {
		if err := validID("device id", c.DeviceID); err != nil {
			return c, configErr("%v", err)
		}
	}
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
		lo   time.Duration
		hi   time.Duration
	}{
		{"heartbeat interval", &c.HeartbeatInterval, 0, MinInterval, MaxInterval},
		{"ping interval", &c.PingInterval, 0, MinInterval, time.Hour},
		{"dead-link timeout", &c.DeadAfter, 0, MinInterval, 2 * time.Hour},
		{"handshake timeout", &c.HandshakeTimeout, DefaultHandshakeTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"write timeout", &c.WriteTimeout, DefaultWriteTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"stable-after", &c.StableAfter, DefaultStableAfter, time.Second, 24 * time.Hour},
		{"max Retry-After", &c.MaxRetryAfter, DefaultMaxRetryAfter, time.Second, 24 * time.Hour},
		{"command timeout", &c.CommandTimeout, DefaultCommandTimeout, 10 * time.Millisecond, time.Hour},
		{"telemetry interval", &c.TelemetryInterval, 0, MinInterval, MaxInterval},
	}
	for _, d := range durs {
		if *d.v == 0 {
			*d.v = d.def
			continue
		}
		if *d.v < d.lo || *d.v > d.hi {
			return c, configErr("%s must be between %v and %v, got %v", d.name, d.lo, d.hi, *d.v)
		}
	}
	if c.DeadAfter != 0 && c.PingInterval != 0 && c.DeadAfter <= c.PingInterval {
		return c, configErr("dead-link timeout (%v) must exceed the ping interval (%v)", c.DeadAfter, c.PingInterval)
	}
	if b := c.Backoff; b.Initial < 0 || b.Max < 0 || b.Multiplier < 0 || b.Multiplier > 100 || b.Initial > time.Hour || b.Max > 24*time.Hour {
		return c, configErr("backoff out of range")
	}
	c.Backoff = c.Backoff.withDefaults()
	switch {
	case c.MaxFrameBytes == 0:
		c.MaxFrameBytes = DefaultMaxFrameBytes
	case c.MaxFrameBytes < 1024 || c.MaxFrameBytes > 16<<20:
		return c, configErr("max frame bytes must be between 1 KiB and 16 MiB")
	}
	switch {
	case c.MaxOutputBytes == 0:
		c.MaxOutputBytes = DefaultMaxOutputBytes
	case c.MaxOutputBytes < 64 || c.MaxOutputBytes > 1<<20:
		return c, configErr("max output bytes must be between 64 B and 1 MiB")
	}
	switch {
	case c.MaxConcurrentCommands == 0:
		c.MaxConcurrentCommands = DefaultMaxCommands
	case c.MaxConcurrentCommands < 1 || c.MaxConcurrentCommands > 64:
		return c, configErr("max concurrent commands must be between 1 and 64")
	}
	if len(c.PinSHA256) != 0 && len(c.PinSHA256) != 32 {
		return c, configErr("certificate pin must be 32 bytes (SHA-256)")
	}
	for _, p := range []struct{ name, path string }{{"command hook", c.CommandHook}, {"telemetry command", c.TelemetryCommand}} {
		if p.path == "" {
			continue
		}
		if err := checkProgram(p.path); err != nil {
			return c, configErr("%s: %v", p.name, err)
		}
	}
	if c.TelemetryInterval > 0 && (c.TelemetryCommand == "") == (c.TelemetryFile == "") {
		return c, configErr("telemetry needs exactly one of a command and a file")
	}
	if c.TelemetryInterval == 0 && (c.TelemetryCommand != "" || c.TelemetryFile != "") {
		return c, configErr("telemetry source given without an interval")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Rand == nil {
		c.Rand = defaultRand
	}
	return c, nil
}

// checkProgram requires an absolute path to an executable regular file:
// a relative name would be looked up in PATH, which an attacker may control.
func checkProgram(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%q is not an absolute path", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%q is not an executable file", path)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%q is writable by anyone", path)
	}
	return nil
}

// ValidateKey checks a device key's shape: 1–4096 RFC 7230 token
// characters (what a subprotocol entry may hold). It never echoes the key.
func ValidateKey(key string) error {
	if key == "" {
		return configErr("device key is empty")
	}
	if len(key) > MaxKeyBytes {
		return configErr("device key is longer than %d bytes", MaxKeyBytes)
	}
	if !isToken(key) {
		return configErr("device key contains characters not allowed in a subprotocol")
	}
	if key == protocol.Subprotocol {
		return configErr("device key cannot be %q", protocol.Subprotocol)
	}
	return nil
}

// isToken reports whether s is made of RFC 7230 token characters.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// validID checks ids (device ids, command ids): printable ASCII without
// quotes or backslashes, 1–128 bytes.
func validID(what, s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%s must be 1–128 bytes", what)
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b >= 0x7f || b == '"' || b == '\\' {
			return fmt.Errorf("%s contains a character that is not allowed", what)
		}
	}
	return nil
}

package mlbridge

import (
	"fmt"
	"os"
	"regexp"
	"runtime"
	"time"
)

// Config configures a Supervisor. The zero value is a valid configuration:
// every zero field means the documented default.
type Config struct {
	// Workers is the number of worker processes. Zero means 2.
	Workers int
	// Command is the worker's command line; the socket path is appended as
	// the last argument. Empty means the built-in Python worker (the
	// embedded SDK and models, run with Python).
	Command []string
	// Python is the interpreter for the built-in worker. Zero means
	// "python3" looked up on PATH.
	Python string
	// Modules are Python modules (dotted names) or .py files the built-in
	// worker imports to register the operator's own models.
	Modules []string
	// PythonPath lists extra import directories for the built-in worker,
	// like PYTHONPATH (which the worker ignores: it runs with -E).
	PythonPath []string
	// Env lists extra KEY=VALUE variables for the workers. Workers do not
	// inherit the server's environment, which may hold secrets: they get
	// only PATH, HOME, LANG, LC_ALL, LC_CTYPE, TZ, TMPDIR and PYENV_* from it.
	Env []string
	// Idempotent names models that may be retried after a worker crash even
	// if the worker does not advertise them as idempotent (foreign workers).
	Idempotent []string
	// ProcessesPerWorker sizes the built-in worker's process pool for
	// CPU-bound models. Zero means max(1, NumCPU/Workers).
	ProcessesPerWorker int
	// ConnsPerWorker is the number of connections, and so of concurrent
	// requests, per worker. Zero means 4.
	ConnsPerWorker int
	// MaxFrameBytes caps a frame body in both directions. Zero means
	// DefaultMaxFrameBytes (10 MiB).
	MaxFrameBytes int
	// QueueSize is how many callers may wait for a free connection before
	// calls fail with ErrSaturated. Zero means 64; negative means none.
	QueueSize int
	// CallTimeout bounds a call (queueing included) when the caller's
	// context has no earlier deadline. Zero means 30s.
	CallTimeout time.Duration
	// HealthInterval is the period of health checks. Zero means 10s.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check. Zero means 5s.
	HealthTimeout time.Duration
	// UnhealthyAfter is the number of consecutive failed health checks
	// after which a worker is restarted. Zero means 3.
	UnhealthyAfter int
	// TimeoutsUnhealthy is the number of consecutive calls timing out on
	// a worker (in flight, not queued) after which it is recycled: a
	// wedged process must not keep receiving calls. Zero means 2.
	TimeoutsUnhealthy int
	// StartTimeout bounds a worker's start until it answers a health check.
	// Zero means 30s.
	StartTimeout time.Duration
	// StopGrace is how long a worker may drain after SIGTERM before it is
	// killed. Zero means 5s.
	StopGrace time.Duration
	// RestartBackoff is the first delay before restarting a failed worker;
	// it doubles on each failure in a row up to MaxRestartBackoff. Zero
	// means 250ms and 30s. A worker that stayed up for a minute starts over
	// at RestartBackoff.
	RestartBackoff, MaxRestartBackoff time.Duration
	// Dir is the parent of the supervisor's private directory (sockets and
	// the SDK). Zero means os.TempDir(). Socket paths must stay under 108
	// bytes, so keep it short.
	Dir string

	// jitter is the ± fraction of random spread on restart delays (0.2);
	// tests set it to -1 for none.
	jitter float64
}

const (
	defaultWorkers        = 2
	defaultConnsPerWorker = 4
	defaultQueueSize      = 64
	stableAfter           = time.Minute
	maxModelName          = 128
)

var modelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// withDefaults returns c with every zero field replaced by its default, or an
// error for values that make no sense.
func (c Config) withDefaults() (Config, error) {
	if c.Workers < 0 || c.ConnsPerWorker < 0 || c.MaxFrameBytes < 0 || c.ProcessesPerWorker < 0 || c.UnhealthyAfter < 0 {
		return c, fmt.Errorf("mlbridge: negative Workers, ConnsPerWorker, MaxFrameBytes, ProcessesPerWorker or UnhealthyAfter")
	}
	if c.Workers == 0 {
		c.Workers = defaultWorkers
	}
	if c.Workers > 64 {
		return c, fmt.Errorf("mlbridge: Workers %d is over the limit of 64", c.Workers)
	}
	if c.ConnsPerWorker == 0 {
		c.ConnsPerWorker = defaultConnsPerWorker
	}
	if c.ConnsPerWorker > 256 {
		return c, fmt.Errorf("mlbridge: ConnsPerWorker %d is over the limit of 256", c.ConnsPerWorker)
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxFrameBytes < 64 || c.MaxFrameBytes > 1<<30 {
		return c, fmt.Errorf("mlbridge: MaxFrameBytes %d outside [64, 1 GiB]", c.MaxFrameBytes)
	}
	switch {
	case c.QueueSize == 0:
		c.QueueSize = defaultQueueSize
	case c.QueueSize < 0:
		c.QueueSize = 0
	}
	if c.ProcessesPerWorker == 0 {
		c.ProcessesPerWorker = max(1, runtime.NumCPU()/c.Workers)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CallTimeout, 30*time.Second)
	def(&c.HealthInterval, 10*time.Second)
	def(&c.HealthTimeout, 5*time.Second)
	def(&c.StartTimeout, 30*time.Second)
	def(&c.StopGrace, 5*time.Second)
	def(&c.RestartBackoff, 250*time.Millisecond)
	def(&c.MaxRestartBackoff, 30*time.Second)
	if c.MaxRestartBackoff < c.RestartBackoff {
		c.MaxRestartBackoff = c.RestartBackoff
	}
	if c.TimeoutsUnhealthy <= 0 {
		c.TimeoutsUnhealthy = 2
	}
	if c.UnhealthyAfter == 0 {
		c.UnhealthyAfter = 3
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.jitter == 0 {
		c.jitter = 0.2
	}
	for _, m := range c.Idempotent {
		if !modelNameRE.MatchString(m) {
			return c, fmt.Errorf("mlbridge: invalid model name %q in Idempotent", m)
		}
	}
	return c, nil
}

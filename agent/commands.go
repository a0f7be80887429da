package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/unhidra/unhidra/protocol"
)

// maxErrorText bounds the error text of an ack.
const maxErrorText = 512

// dispatch validates a command frame and runs it in its own goroutine.
// When MaxConcurrentCommands already run, it waits in a queue as long as
// the server's command window (so a server that keeps to the window never
// sees "busy"); past that it is acked ok:false at once. A command id seen
// before (the server re-sends unanswered commands after a reconnect) is
// not run again: its recorded ack is sent again, or, while it still runs,
// nothing is (its ack will follow).
func (c *conn) dispatch(f *inbound) {
	a := c.a
	if err := validID("command id", f.ID); err != nil {
		a.log.Warn("ignoring a command without a valid id", "type", f.Type)
		return
	}
	if done, prev := a.seen.claim(f.ID); done {
		a.log.Info("command already answered; sending its ack again", "id", f.ID)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.writeAck(prev) }()
		return
	} else if prev != nil {
		return // running: its ack follows
	}
	name := f.Command
	if name == "" && f.Type != protocol.TypeCommand {
		name = f.Type // a bare config or ota frame goes to the handler of that name
	}
	if !validCommandName(name) {
		c.ackAsync(f.ID, nil, errors.New("invalid command name"))
		return
	}
	params := f.Params
	if len(params) > 0 && !(params[0] == '{' || params[0] == '[') && string(params) != "null" {
		c.ackAsync(f.ID, nil, errors.New("params must be a JSON object or array"))
		return
	}
	job := queuedCommand{typ: f.Type, id: f.ID, name: name, params: params}
	select {
	case c.sem <- struct{}{}:
		c.start(job)
		return
	default:
	}
	c.qmu.Lock()
	queued := len(c.queue) < c.commandWindow()
	if queued {
		c.queue = append(c.queue, job)
	}
	c.qmu.Unlock()
	if !queued {
		c.ackAsync(f.ID, nil, errors.New("busy: too many commands running"))
	}
}

// queuedCommand is a command waiting for a free slot.
type queuedCommand struct {
	typ, id, name string
	params        json.RawMessage
}

// start runs job in the slot its caller holds; when it is done, the slot
// passes to the oldest queued command, if any.
func (c *conn) start(job queuedCommand) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(job.typ, job.id, job.name, job.params, func() {
			c.qmu.Lock()
			var next *queuedCommand
			if len(c.queue) > 0 {
				next = &c.queue[0]
				c.queue = c.queue[1:]
			}
			c.qmu.Unlock()
			if next != nil {
				c.start(*next)
			} else {
				<-c.sem
			}
		})
	}()
}

// commandWindow is how many commands may wait for a slot: the welcome's
// command_window (1–1024), else DefaultCommandWindow.
func (c *conn) commandWindow() int {
	if w := seconds(c.welcome.Limits.CommandWindow); w >= 1 && w <= 1024 {
		return int(w)
	}
	return DefaultCommandWindow
}

// maxResult is the largest result the server takes in an ack: the
// welcome's max_result_bytes (64 B–1 MiB), else DefaultMaxResultBytes.
func (c *conn) maxResult() int {
	if n := seconds(c.welcome.Limits.MaxResultBytes); n >= 64 && n <= 1<<20 {
		return int(n)
	}
	return DefaultMaxResultBytes
}

// maxError is the longest error text the server keeps.
func (c *conn) maxError() int {
	if n := seconds(c.welcome.Limits.MaxErrorBytes); n >= 16 && n < maxErrorText {
		return int(n)
	}
	return maxErrorText
}

// ackAsync acks without blocking the read loop on a slow write.
func (c *conn) ackAsync(id string, result json.RawMessage, err error) {
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.sendAck(id, result, err) }()
}

// sendAck builds the ack of a finished command, records it (a re-sent
// command gets it again) and sends it. A result larger than the server's
// limit is cut to it (see truncateResult) and marked truncated.
func (c *conn) sendAck(id string, result json.RawMessage, err error) error {
	m := &ack{Type: protocol.TypeAck, ID: id, OK: err == nil, Result: result}
	if err != nil {
		m.Error = c.a.red.clean(err.Error(), c.maxError())
		m.Result = nil
	} else if limit := c.maxResult(); len(m.Result) > limit {
		c.a.log.Warn("command result truncated to the server's limit", "id", id, "bytes", len(m.Result), "limit", limit)
		m.Result, m.Truncated = truncateResult(m.Result, limit), true
	}
	c.a.seen.finish(id, m)
	return c.writeAck(m)
}

func (c *conn) writeAck(m *ack) error {
	if werr := c.write(m); werr != nil {
		c.a.log.Warn("could not send ack", "id", m.ID, "err", c.a.red.Err(werr))
		return werr
	}
	return nil
}

// truncationMarker ends a truncated result.
const truncationMarker = "…[truncated]"

// truncateResult turns a result too large for the server into a JSON
// string of at most limit bytes: as much of the result's text as fits,
// then truncationMarker.
func truncateResult(result json.RawMessage, limit int) json.RawMessage {
	text := strings.ToValidUTF8(string(result), "\uFFFD")
	enc := func(n int) []byte {
		cut := text[:n]
		for len(cut) > 0 && !utf8.ValidString(cut) {
			cut = cut[:len(cut)-1]
		}
		b, _ := json.Marshal(cut + truncationMarker)
		return b
	}
	// The longest prefix whose encoding fits (escapes make it nonlinear).
	lo, hi := 0, len(text)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if len(enc(mid)) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return enc(lo)
}

// run executes one command, calls release (its slot is free once it has
// run: the ack is only a write) and acks it.
func (c *conn) run(typ, id, name string, params json.RawMessage, release func()) {
	a := c.a
	ctx, cancel := context.WithTimeout(context.WithValue(c.ctx, connKey{}, c), a.cfg.CommandTimeout)
	defer cancel()
	a.mu.Lock()
	fn := a.handlers[name]
	builtinReboot := name == "reboot" && !a.ownBoot
	a.mu.Unlock()
	start := time.Now()
	var result json.RawMessage
	var err error
	switch {
	case fn != nil:
		result, err = c.callHandler(ctx, fn, params)
	case a.cfg.CommandHook != "":
		result, err = runHook(ctx, a.cfg.CommandHook, a.cfg.MaxOutputBytes, typ, id, name, params)
	default:
		err = fmt.Errorf("unknown command %q", name)
	}
	a.log.Info("command", "id", id, "command", name, "ok", err == nil, "took", time.Since(start).Round(time.Millisecond), "err", a.red.Err(err))
	if err != nil && c.ctx.Err() != nil {
		// Cut short because the connection ended: not an answer. The
		// server re-sends it on the next connection, where it runs again.
		a.seen.forget(id)
		release()
		return
	}
	// The ack turn is taken before the slot passes on: the command that
	// takes the slot may run at once, but its ack waits for this one. So a
	// command that waited for a slot is never acked before the one whose
	// slot it took; commands running side by side still ack as they finish.
	c.ackTurn.Lock()
	release()
	ackErr := c.sendAck(id, result, err)
	c.ackTurn.Unlock()
	if ackErr == nil && err == nil && builtinReboot && a.cfg.AllowReboot && a.cfg.Reboot != nil {
		a.log.Warn("rebooting on the server's command", "id", id)
		if rerr := a.cfg.Reboot(ctx); rerr != nil {
			a.log.Error("reboot failed", "err", rerr)
		}
	}
}

// callHandler runs a Go handler, turning a panic into an error, and
// encodes its result within the output limit.
func (c *conn) callHandler(ctx context.Context, fn HandlerFunc, params json.RawMessage) (res json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.a.log.Error("command handler panicked", "panic", fmt.Sprint(p))
			res, err = nil, errors.New("handler failed")
		}
	}()
	v, err := fn(ctx, params)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	if len(b) > c.a.cfg.MaxOutputBytes {
		return nil, fmt.Errorf("result larger than %d bytes", c.a.cfg.MaxOutputBytes)
	}
	return b, nil
}

// hookEnv is the whole environment of external programs: never the
// agent's own (which may hold UNHIDRA_DEVICE_KEY).
func hookEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, extra...)
}

// runHook runs the command hook: argv = [hook, name], params on stdin.
// No shell is involved, so nothing in a frame is interpreted.
func runHook(ctx context.Context, hook string, limit int, typ, id, name string, params json.RawMessage) (json.RawMessage, error) {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	out, err := runProgram(ctx, hook, []string{name}, params, limit,
		hookEnv("UNHIDRA_COMMAND="+name, "UNHIDRA_COMMAND_ID="+id, "UNHIDRA_COMMAND_TYPE="+typ))
	if err != nil {
		return nil, err
	}
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return nil, nil
	}
	if json.Valid(out) {
		return out, nil
	}
	b, _ := json.Marshal(strings.ToValidUTF8(string(out), "\uFFFD"))
	return b, nil
}

// errOutputLimit is returned when a program prints more than allowed.
var errOutputLimit = errors.New("output exceeds the limit")

// runProgram runs path with args, stdin and env, killing it at ctx's end
// or when its stdout exceeds limit bytes. Stderr (first 256 bytes) is
// quoted in the error of a non-zero exit.
func runProgram(ctx context.Context, path string, args []string, stdin []byte, limit int, env []string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Dir = os.TempDir()
	cmd.Stdin = bytes.NewReader(stdin)
	stdout := &cappedBuffer{max: limit, onOverflow: cancel}
	stderr := &cappedBuffer{max: 256}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	killGroup(cmd)
	// A child that keeps the pipes open must not hold us after the kill.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case stdout.overflow:
		return nil, fmt.Errorf("%w of %d bytes", errOutputLimit, limit)
	case ctx.Err() != nil && err != nil:
		return nil, fmt.Errorf("timed out: %w", context.Cause(ctx))
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg := strings.TrimSpace(strings.ToValidUTF8(string(stderr.buf), ""))
			if msg != "" {
				return nil, fmt.Errorf("%s: %s", ee.ProcessState, msg)
			}
			return nil, fmt.Errorf("%s", ee.ProcessState)
		}
		return nil, fmt.Errorf("run: %w", err)
	}
	return stdout.buf, nil
}

// cappedBuffer keeps at most max bytes; past that it records the
// overflow and calls onOverflow (which kills the program).
type cappedBuffer struct {
	buf        []byte
	max        int
	overflow   bool
	onOverflow func()
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); len(p) > room {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		if !b.overflow && b.onOverflow != nil {
			b.overflow = true
			b.onOverflow()
		}
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// sendTelemetry reads readings and sends them; failures are logged only.
func (c *conn) sendTelemetry() {
	cfg := c.a.cfg
	ctx, cancel := context.WithTimeout(c.ctx, cfg.CommandTimeout)
	defer cancel()
	var data []byte
	var err error
	if cfg.TelemetryCommand != "" {
		data, err = runProgram(ctx, cfg.TelemetryCommand, nil, nil, cfg.MaxOutputBytes, hookEnv())
	} else {
		data, err = readFileLimited(cfg.TelemetryFile, cfg.MaxOutputBytes)
	}
	if err == nil {
		data, err = checkReadings(data)
	}
	if err != nil {
		c.a.log.Warn("telemetry not sent", "err", err)
		return
	}
	if err := c.write(telemetry{Type: protocol.TypeTelemetry, Readings: data}); err != nil {
		c.a.log.Warn("telemetry not sent", "err", c.a.red.Err(err))
	}
}

// checkReadings requires one JSON object.
func checkReadings(data []byte) ([]byte, error) {
	data = bytes.TrimSpace(data)
	var m map[string]json.RawMessage
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &m) != nil {
		return nil, errors.New("readings are not a JSON object")
	}
	return data, nil
}

func readFileLimited(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("telemetry file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("telemetry file: %w", err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("telemetry file: %w of %d bytes", errOutputLimit, limit)
	}
	return data, nil
}

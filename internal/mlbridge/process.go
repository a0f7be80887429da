package mlbridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/unhidra/unhidra/python"
)

const (
	dirPrefix  = "unhidra-ml-"
	lockName   = "lock"
	maxSockLen = 107 // sun_path is 108 bytes with the terminating NUL
)

// privateDir is the supervisor's directory for sockets and the embedded SDK.
type privateDir struct {
	path string
	lock *os.File // holds an exclusive flock while we run
}

// makePrivateDir removes the private directories of dead runs under parent,
// then creates ours.
//
// Why no other user can reach a socket at any moment: os.MkdirTemp creates
// the directory with mode 0700 in the same mkdir call (no window with wider
// permissions), and every socket is created inside it later, so another user
// cannot even traverse to the socket path whatever the socket's own mode.
// The SDK worker additionally binds under umask 0177, so its socket is 0600
// from the start.
func makePrivateDir(parent string, log *slog.Logger) (*privateDir, error) {
	removeStaleDirs(parent, log)
	path, err := os.MkdirTemp(parent, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("mlbridge: create private directory: %w", err)
	}
	// A run holds an exclusive flock on its lock file for its whole life;
	// the kernel drops it when the process dies, even by SIGKILL, which is
	// how a later run tells a stale directory from a live one.
	f, err := os.OpenFile(filepath.Join(path, lockName), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(path)
		return nil, fmt.Errorf("mlbridge: lock private directory: %w", err)
	}
	return &privateDir{path: path, lock: f}, nil
}

func (d *privateDir) remove() error {
	err := os.RemoveAll(d.path)
	d.lock.Close()
	return err
}

// removeStaleDirs deletes directories left by runs that died without
// cleaning up: ours (same owner), named like ours, whose lock is free.
func removeStaleDirs(parent string, log *slog.Logger) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	uid := os.Getuid()
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		path := filepath.Join(parent, e.Name())
		fi, err := os.Lstat(path)
		if err != nil || !fi.IsDir() {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || int(st.Uid) != uid {
			continue
		}
		if !lockIsFree(path, fi) {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			log.Warn("mlbridge: cannot remove stale directory", "dir", path, "err", err)
			continue
		}
		log.Info("mlbridge: removed stale directory of a previous run", "dir", path)
	}
}

func lockIsFree(dir string, fi fs.FileInfo) bool {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		// No lock file: either a run is between mkdir and lock (seconds
		// old at most) or it died there.
		return errors.Is(err, fs.ErrNotExist) && time.Since(fi.ModTime()) > time.Minute
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	return true
}

// writeSDK writes the embedded Python package into dir/py and returns that
// directory (the worker's working directory, so -m finds the package).
func writeSDK(dir string) (string, error) {
	root := filepath.Join(dir, "py")
	err := fs.WalkDir(python.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(root, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := fs.ReadFile(python.FS(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		return "", fmt.Errorf("mlbridge: write worker SDK: %w", err)
	}
	return root, nil
}

// workerEnv is the environment of a worker: a few harmless variables of
// ours plus the configured extras. Secrets in the server's environment
// (database DSNs, keys) stay out of the workers.
func workerEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "LANG", k == "LC_ALL", k == "LC_CTYPE", k == "TZ", k == "TMPDIR",
			strings.HasPrefix(k, "PYENV_"):
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// proc is one running worker process.
type proc struct {
	cmd   *exec.Cmd
	pid   int
	stdin *os.File // write end of the worker's stdin; closing it tells the SDK to exit
	tail  *lineTail
	done  chan struct{} // closed once the process is reaped and its output drained

	mu     sync.Mutex
	exited bool  // guarded by mu: set once the process has exited (pid not yet reusable)
	err    error // set before done is closed
}

// startProc starts argv with the socket path appended. The process gets its
// own process group (so stragglers it forks can be killed together) and
// Pdeathsig SIGKILL, so the kernel kills it if the server dies, however.
// (Pdeathsig fires when the OS thread that forked it exits; Go only ends
// threads locked with LockOSThread, which this package never does. The SDK's
// stdin watch covers wrappers such as shells that exec nothing.)
func startProc(argv []string, sock, dir string, env []string, log *slog.Logger, idx int) (*proc, error) {
	args := append(append([]string(nil), argv...), sock)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("mlbridge: worker stdin pipe: %w", err)
	}
	tail := &lineTail{}
	cmd.Stdin = r
	cmd.Stdout = &logWriter{log: log, idx: idx, stream: "stdout", tail: tail}
	cmd.Stderr = &logWriter{log: log, idx: idx, stream: "stderr", tail: tail}
	cmd.SysProcAttr = sysProcAttr()
	// Children of the worker that outlive it may hold its stdout open; do
	// not wait for them forever.
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("mlbridge: start worker %d (%s): %w", idx, args[0], err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, stdin: w, tail: tail, done: make(chan struct{})}
	go p.wait() // owner: whoever holds p waits on p.done (stop always does)
	return p, nil
}

func (p *proc) wait() {
	// Where the OS allows it, wait for the exit without reaping, so the pid
	// (and the process group id) cannot be reused while stragglers of the
	// group are killed.
	if waitExitedNoReap(p.pid) {
		p.mu.Lock()
		p.exited = true
		_ = syscall.Kill(-p.pid, syscall.SIGKILL) // leftovers of the group; ESRCH when none
		p.mu.Unlock()
	}
	err := p.cmd.Wait()
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	p.stdin.Close()
	p.err = err
	close(p.done)
}

// signal sends sig to the worker (group: to its whole process group) unless
// it has already exited.
func (p *proc) signal(sig syscall.Signal, group bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	pid := p.pid
	if group {
		pid = -pid
	}
	_ = syscall.Kill(pid, sig)
}

// stop asks the worker to exit (SIGTERM), kills its process group after
// grace or as soon as now is closed, and returns once it is reaped.
func (p *proc) stop(grace time.Duration, now <-chan struct{}) {
	p.signal(syscall.SIGTERM, false)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	case <-now:
	}
	p.signal(syscall.SIGKILL, true)
	<-p.done
}

func (p *proc) exitErr() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	err := p.err
	if err == nil {
		err = errors.New("exited with status 0")
	}
	if t := p.tail.String(); t != "" {
		err = fmt.Errorf("%w; last output: %s", err, t)
	}
	return err
}

// Log forwarding ------------------------------------------------------------

const (
	maxLogLine = 16 << 10 // longer lines are cut
	tailLines  = 5
	tailChars  = 300
)

// logWriter forwards a worker's output to slog, one record per line. JSON
// lines from the SDK ({"level","msg",…}) keep their level, message and
// fields. Each instance is used by one exec copying goroutine only.
type logWriter struct {
	log    *slog.Logger
	idx    int
	stream string
	tail   *lineTail
	buf    []byte
	skip   bool // dropping the rest of an over-long line
}

func (w *logWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !w.skip {
			room := maxLogLine - len(w.buf)
			if len(chunk) > room {
				w.buf = append(w.buf, chunk[:room]...)
				w.emit(true)
				w.skip = true
			} else {
				w.buf = append(w.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !w.skip {
			w.emit(false)
		}
		w.skip = false
		b = b[i+1:]
	}
	return n, nil
}

func (w *logWriter) emit(cut bool) {
	line := strings.ToValidUTF8(string(w.buf), "\uFFFD")
	w.buf = w.buf[:0]
	if line == "" {
		return
	}
	w.tail.add(line)
	attrs := []any{"worker", w.idx, "stream", w.stream}
	if cut {
		attrs = append(attrs, "truncated", true)
	}
	level, msg := slog.LevelInfo, line
	if rec, ok := parseLogJSON(line); ok {
		level, msg = rec.level, rec.msg
		attrs = append(attrs, rec.attrs...)
	}
	w.log.Log(context.Background(), level, "ml worker: "+msg, attrs...)
}

// lineTail keeps the last few output lines for error messages.
type lineTail struct {
	mu    sync.Mutex
	lines []string
}

func (t *lineTail) add(s string) {
	if len(s) > tailChars {
		s = s[:tailChars] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > tailLines {
		t.lines = t.lines[1:]
	}
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

// Instances -------------------------------------------------------------------

// procInstance is a started and ready worker process.
type procInstance struct {
	p        *proc
	sock     string
	maxFrame int
	hc       *conn // health-check connection, used by the run loop only
}

func (in *procInstance) pid() int              { return in.p.pid }
func (in *procInstance) done() <-chan struct{} { return in.p.done }
func (in *procInstance) exitErr() error        { return in.p.exitErr() }

func (in *procInstance) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", in.sock)
}

// health runs one health check on the instance's dedicated connection,
// replacing the connection when it failed.
func (in *procInstance) health(ctx context.Context) error {
	if in.hc == nil {
		nc, err := in.dial(ctx)
		if err != nil {
			return fmt.Errorf("%w: dial: %w", ErrWorkerCrashed, err)
		}
		in.hc = newConn(nc, in.maxFrame)
	}
	err := in.hc.healthCheck(ctx)
	if err != nil {
		in.hc.close()
		in.hc = nil
	}
	return err
}

// listModels asks the worker for its models on the health connection.
func (in *procInstance) listModels(ctx context.Context) ([]ModelInfo, error) {
	if err := in.health(ctx); err != nil { // (re)connects
		return nil, err
	}
	resp, err := in.hc.call(ctx, Request{Data: ListModelsData, RequestID: newRequestID()}, false)
	if err != nil {
		in.hc.close()
		in.hc = nil
		return nil, err
	}
	return parseModelList(resp)
}

func (in *procInstance) stop(grace time.Duration, now <-chan struct{}) {
	if in.hc != nil {
		in.hc.close()
		in.hc = nil
	}
	in.p.stop(grace, now)
}

// launchProc starts worker idx and waits until it answers a health check
// within timeout. On failure the process is stopped and reaped.
func launchProc(ctx context.Context, s *Supervisor, idx int) (instance, error) {
	sock := s.sockPath(idx)
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("mlbridge: remove old socket: %w", err)
	}
	p, err := startProc(s.argv, sock, s.workDir, s.env, s.log, idx)
	if err != nil {
		return nil, err
	}
	in := &procInstance{p: p, sock: sock, maxFrame: s.cfg.MaxFrameBytes}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	if err := waitReady(ctx, in); err != nil {
		in.stop(s.cfg.StopGrace, s.killNow)
		os.Remove(sock)
		return nil, fmt.Errorf("mlbridge: worker %d (pid %d) not ready: %w", idx, p.pid, err)
	}
	return in, nil
}

// waitReady polls until the worker accepts a connection and answers a
// health check, the process exits, or ctx ends.
func waitReady(ctx context.Context, in *procInstance) error {
	delay := 5 * time.Millisecond
	var last error
	for {
		select {
		case <-in.p.done:
			return fmt.Errorf("exited during start: %w", in.exitErr())
		default:
		}
		err := in.health(ctx)
		if err == nil {
			return nil
		}
		// A check cut short by the start deadline says nothing about the
		// worker: report the answer before it, if there was one.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w (last error: %v)", timeoutErr("no healthy answer before the start timeout"), last)
			}
			return ctx.Err()
		case <-in.p.done:
			t.Stop()
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

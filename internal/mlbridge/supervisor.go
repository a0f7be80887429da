package mlbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/backoff"
	"github.com/unhidra/unhidra/python"
)

// WorkerState is the life-cycle state of one worker slot.
type WorkerState string

// Worker states.
const (
	StateStarting WorkerState = "starting" // process started, not yet healthy
	StateReady    WorkerState = "ready"    // serving calls
	StateBackoff  WorkerState = "backoff"  // failed; waiting before a restart
	StateStopped  WorkerState = "stopped"  // the supervisor is closed
)

// WorkerStatus is a snapshot of one worker slot, for the API and operators.
type WorkerStatus struct {
	Index    int           `json:"index"`
	PID      int           `json:"pid"` // 0 when no process runs
	State    WorkerState   `json:"state"`
	Uptime   time.Duration `json:"uptime_ns"` // time since it became ready; 0 unless ready
	Restarts int           `json:"restarts"`
	InFlight int           `json:"in_flight"`
	Calls    uint64        `json:"calls"`
	Errors   uint64        `json:"errors"` // calls that failed for a reason other than the model's own error
	// Latencies of the calls on this worker: an EWMA (weight 1/8) and the
	// p50 and p99 of the last 256 calls.
	LatencyEWMA time.Duration `json:"latency_ewma_ns"`
	LatencyP50  time.Duration `json:"latency_p50_ns"`
	LatencyP99  time.Duration `json:"latency_p99_ns"`
	LastError   string        `json:"last_error,omitempty"` // why it last stopped or failed to start
}

// instance is a started, ready worker process as the run loop sees it.
// procInstance is the real one; tests use fakes to drive the loop with
// fake time.
type instance interface {
	pid() int
	done() <-chan struct{} // closed when the process has exited and been reaped
	exitErr() error
	dial(ctx context.Context) (net.Conn, error)
	health(ctx context.Context) error
	listModels(ctx context.Context) ([]ModelInfo, error)
	stop(grace time.Duration, now <-chan struct{}) // returns once the process is gone
}

type launchFunc func(ctx context.Context, s *Supervisor, idx int) (instance, error)

// worker is one slot: at most one process at a time, restarted in place.
// All fields but idx are guarded by Supervisor.mu.
type worker struct {
	idx       int
	state     WorkerState
	inst      instance
	gen       uint64 // bumped whenever the process goes down: stale leases and conns are refused
	pid       int
	readyAt   time.Time
	restarts  int
	inflight  int
	idle      []*conn
	active    map[*conn]struct{}
	calls     uint64
	errs      uint64
	lat       latencies
	lastError string
	timeouts  int           // consecutive in-flight call timeouts
	recycle   chan struct{} // buffered(1): too many timeouts, restart the process
}

// lease is the right to run one request on worker w's process generation gen.
type lease struct {
	w    *worker
	gen  uint64
	inst instance
}

type waiter struct {
	ch chan lease // buffered(1): a granted lease
}

type lifeState int

const (
	lifeNew lifeState = iota
	lifeRunning
	lifeClosed
)

// Supervisor runs the ML workers and dispatches calls to them. Its methods
// are safe for concurrent use.
type Supervisor struct {
	// Static after New.
	cfg     Config
	log     *slog.Logger
	launch  launchFunc
	metrics *metrics
	closing chan struct{} // closed by Close: waiters give up
	killNow chan struct{} // closed when Close runs out of time: no more grace
	killMu  sync.Once

	// Set by Start before any worker runs; read-only afterwards.
	dir       *privateDir
	argv      []string
	workDir   string
	env       []string
	runCancel context.CancelFunc
	wg        sync.WaitGroup // the run loops

	lifeMu sync.Mutex // serialises Start and Close

	mu         sync.Mutex // guards the following and every worker's fields
	life       lifeState
	workers    []*worker
	waiters    []*waiter
	rr         int
	models     map[string]ModelInfo // from the latest listing
	idempotent map[string]bool      // Config.Idempotent and advertised ones
}

// New checks cfg and returns a Supervisor that is not yet running; Start
// launches the workers. log receives the supervisor's and the workers' logs
// (nil discards them).
func New(cfg Config, log *slog.Logger) (*Supervisor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{
		cfg:        cfg,
		log:        log,
		launch:     launchProc,
		closing:    make(chan struct{}),
		killNow:    make(chan struct{}),
		models:     map[string]ModelInfo{},
		idempotent: map[string]bool{},
	}
	for _, m := range cfg.Idempotent {
		s.idempotent[m] = true
	}
	for i := range cfg.Workers {
		s.workers = append(s.workers, &worker{idx: i, state: StateStarting, active: map[*conn]struct{}{}, recycle: make(chan struct{}, 1)})
	}
	s.metrics = newMetrics(s)
	return s, nil
}

// Start prepares the private directory and launches the workers. It returns
// once every worker has answered a health check, or with an error (after
// stopping whatever it started) if any fails to start within
// Config.StartTimeout or ctx ends first. A Supervisor starts at most once.
func (s *Supervisor) Start(ctx context.Context) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.mu.Lock()
	if s.life != lifeNew {
		s.mu.Unlock()
		return fmt.Errorf("mlbridge: Start called twice or after Close: %w", ErrClosed)
	}
	s.life = lifeRunning
	s.mu.Unlock()

	if err := s.prepare(); err != nil {
		s.markClosed()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.runCancel = cancel
	first := make(chan error, len(s.workers))
	for _, w := range s.workers {
		s.wg.Add(1)
		go s.runWorker(runCtx, w, first)
	}
	var errs []error
	for pending := len(s.workers); pending > 0; pending-- {
		select {
		case err := <-first:
			if err != nil {
				errs = append(errs, err)
				cancel() // no point waiting for the others
			}
			continue
		case <-ctx.Done():
		}
		cancel()
		errs = append(errs, fmt.Errorf("mlbridge: start: %w", ctx.Err()))
		for ; pending > 0; pending-- { // every loop reports once, canceled or not
			<-first
		}
		break
	}
	if len(errs) > 0 {
		s.shutdown(context.Background())
		return errors.Join(errs...)
	}
	s.log.Info("mlbridge: workers ready", "workers", len(s.workers), "dir", s.dir.path, "command", s.argv[0])
	return nil
}

// prepare creates the private directory, writes the SDK when the built-in
// worker is used, and fixes the command line.
func (s *Supervisor) prepare() error {
	dir, err := makePrivateDir(s.cfg.Dir, s.log)
	if err != nil {
		return err
	}
	s.dir = dir
	if n := len(s.sockPath(len(s.workers) - 1)); n > maxSockLen {
		s.dir.remove()
		return fmt.Errorf("mlbridge: socket path %s is %d bytes, over the %d-byte limit: use a shorter Dir",
			s.sockPath(0), n, maxSockLen)
	}
	s.env = workerEnv(s.cfg.Env)
	if len(s.cfg.Command) > 0 {
		s.argv = slices.Clone(s.cfg.Command)
		return nil
	}
	py, err := exec.LookPath(s.cfg.Python)
	if err != nil {
		s.dir.remove()
		return fmt.Errorf("mlbridge: python interpreter for the built-in worker: %w", err)
	}
	if s.workDir, err = writeSDK(dir.path); err != nil {
		s.dir.remove()
		return err
	}
	grace := max(0.1, 0.8*s.cfg.StopGrace.Seconds())
	s.argv = []string{py, "-E", "-s", "-B", "-m", python.PackageName, "--watch-stdin",
		"--max-frame", strconv.Itoa(s.cfg.MaxFrameBytes),
		"--processes", strconv.Itoa(s.cfg.ProcessesPerWorker),
		"--grace", strconv.FormatFloat(grace, 'f', 2, 64)}
	for _, p := range s.cfg.PythonPath {
		s.argv = append(s.argv, "--path", p)
	}
	for _, m := range s.cfg.Modules {
		s.argv = append(s.argv, "--module", m)
	}
	return nil
}

func (s *Supervisor) sockPath(idx int) string {
	return filepath.Join(s.dir.path, "w"+strconv.Itoa(idx)+".sock")
}

// Close stops the workers (SIGTERM, then SIGKILL after Config.StopGrace, or
// at once when ctx ends), fails waiting and later calls with ErrClosed, and
// removes the private directory. It returns once every worker process is
// gone. Calls in flight may finish while their worker drains.
func (s *Supervisor) Close(ctx context.Context) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.mu.Lock()
	was := s.life
	s.mu.Unlock()
	if was != lifeRunning {
		s.markClosed()
		return nil
	}
	return s.shutdown(ctx)
}

func (s *Supervisor) markClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life == lifeClosed {
		return
	}
	s.life = lifeClosed
	close(s.closing)
	s.waiters = nil // each waiter also watches s.closing
	for _, w := range s.workers {
		w.state = StateStopped
	}
}

func (s *Supervisor) shutdown(ctx context.Context) error {
	s.markClosed()
	s.runCancel()
	done := make(chan struct{})
	go func() { // owned here: waited for below on every path
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.killMu.Do(func() { close(s.killNow) })
		<-done
	}
	s.mu.Lock()
	for _, w := range s.workers {
		w.state, w.pid = StateStopped, 0
	}
	s.mu.Unlock()
	if err := s.dir.remove(); err != nil {
		return fmt.Errorf("mlbridge: remove private directory: %w", err)
	}
	s.log.Info("mlbridge: stopped")
	return nil
}

// Run loop --------------------------------------------------------------------

// runWorker keeps worker w's process running until ctx ends. The first
// launch's outcome goes to first; if it failed, the loop ends there.
func (s *Supervisor) runWorker(ctx context.Context, w *worker, first chan<- error) {
	defer s.wg.Done()
	bo := backoff.Backoff{Initial: s.cfg.RestartBackoff, Max: s.cfg.MaxRestartBackoff, Factor: 2, Jitter: max(s.cfg.jitter, 0)}
	for {
		s.setState(w, StateStarting, "")
		inst, err := s.launch(ctx, s, w.idx)
		if err != nil && first != nil {
			first <- err
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("mlbridge: worker failed to start", "worker", w.idx, "err", err)
			s.setState(w, StateBackoff, err.Error())
			if !sleepCtx(ctx, bo.Next()) {
				return
			}
			continue
		}
		s.learnModels(ctx, inst)
		upAt := time.Now()
		s.up(w, inst)
		s.log.Info("mlbridge: worker ready", "worker", w.idx, "pid", inst.pid())
		if first != nil {
			first <- nil
			first = nil
		}
		reason, crashed := s.watch(ctx, w, inst)
		leftover := s.down(w, crashed, reason)
		inst.stop(s.cfg.StopGrace, s.killNow)
		for _, c := range leftover { // drained or not, the process is gone now
			c.crashed.Store(true)
			c.close()
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("mlbridge: worker down; restarting", "worker", w.idx, "pid", inst.pid(), "reason", reason)
		s.metrics.restarts.Inc()
		if time.Since(upAt) >= stableAfter {
			bo.Reset()
		}
		s.setState(w, StateBackoff, reason)
		if !sleepCtx(ctx, bo.Next()) {
			return
		}
	}
}

// watch health-checks inst until it exits, turns unhealthy, or ctx ends.
func (s *Supervisor) watch(ctx context.Context, w *worker, inst instance) (reason string, crashed bool) {
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	select { // a signal about the previous process
	case <-w.recycle:
	default:
	}
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return "shutdown", false
		case <-w.recycle:
			return fmt.Sprintf("unhealthy: %d consecutive calls timed out", s.cfg.TimeoutsUnhealthy), true
		case <-inst.done():
			return fmt.Sprintf("exited: %v", inst.exitErr()), true
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
			err := inst.health(hctx)
			cancel()
			if err == nil {
				fails = 0
				continue
			}
			if ctx.Err() != nil {
				return "shutdown", false
			}
			fails++
			s.log.Warn("mlbridge: health check failed", "worker", w.idx, "failures", fails, "err", err)
			if fails >= s.cfg.UnhealthyAfter {
				return fmt.Sprintf("unhealthy: %d failed health checks, last: %v", fails, err), true
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// learnModels records the new process's model listing (names for metric
// labels, idempotency for retries). Foreign workers may not support it.
func (s *Supervisor) learnModels(ctx context.Context, inst instance) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
	defer cancel()
	list, err := inst.listModels(ctx)
	if err != nil {
		s.log.Debug("mlbridge: no model listing from worker", "pid", inst.pid(), "err", err)
		return
	}
	s.setModels(list)
}

func (s *Supervisor) setModels(list []ModelInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range list {
		s.models[m.Name] = m
		if m.Idempotent {
			s.idempotent[m.Name] = true
		}
	}
}

func (s *Supervisor) setState(w *worker, st WorkerState, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life == lifeClosed {
		st = StateStopped
	}
	w.state = st
	if why != "" {
		w.lastError = why
	}
}

// up makes inst the serving process of w and hands free slots to waiters.
func (s *Supervisor) up(w *worker, inst instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.inst, w.pid, w.readyAt = inst, inst.pid(), time.Now()
	if s.life == lifeClosed {
		return
	}
	w.state = StateReady
	s.grantLocked()
}

// down takes w out of service. On a crash the connections in flight are
// failed at once; on shutdown they are returned so they can finish while the
// worker drains and be closed after it exits.
func (s *Supervisor) down(w *worker, crashed bool, reason string) (leftover []*conn) {
	s.mu.Lock()
	w.gen++
	if s.life != lifeClosed {
		w.state = StateBackoff
	}
	w.lastError = reason
	idle := w.idle
	w.idle = nil
	for c := range w.active {
		leftover = append(leftover, c)
	}
	clear(w.active)
	w.inst = nil
	if crashed {
		w.restarts++
	}
	s.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
	if crashed {
		for _, c := range leftover {
			c.crashed.Store(true)
			c.close()
		}
		return nil
	}
	return leftover
}

// Dispatch --------------------------------------------------------------------

// pickLocked reserves a slot on the least-loaded ready worker, preferring
// one other than avoid; ties rotate so idle workers share the load.
func (s *Supervisor) pickLocked(avoid int) (lease, bool) {
	var best *worker
	n := len(s.workers)
	for k := range n {
		w := s.workers[(s.rr+k)%n]
		if w.state != StateReady || w.inflight >= s.cfg.ConnsPerWorker {
			continue
		}
		if best == nil || (best.idx == avoid && w.idx != avoid) ||
			((w.idx != avoid) == (best.idx != avoid) && w.inflight < best.inflight) {
			best = w
		}
	}
	if best == nil {
		return lease{}, false
	}
	s.rr = (best.idx + 1) % n
	best.inflight++
	return lease{w: best, gen: best.gen, inst: best.inst}, true
}

// grantLocked hands free slots to waiters in arrival order.
func (s *Supervisor) grantLocked() {
	for len(s.waiters) > 0 {
		l, ok := s.pickLocked(-1)
		if !ok {
			return
		}
		wt := s.waiters[0]
		s.waiters = s.waiters[1:]
		wt.ch <- l
	}
}

// acquire reserves a slot, waiting in the bounded queue if none is free.
func (s *Supervisor) acquire(ctx context.Context, avoid int) (lease, error) {
	s.mu.Lock()
	if s.life != lifeRunning {
		s.mu.Unlock()
		return lease{}, ErrClosed
	}
	if len(s.waiters) == 0 {
		if l, ok := s.pickLocked(avoid); ok {
			s.mu.Unlock()
			return l, nil
		}
	}
	if len(s.waiters) >= s.cfg.QueueSize {
		s.mu.Unlock()
		return lease{}, fmt.Errorf("%w (%d waiting)", ErrSaturated, s.cfg.QueueSize)
	}
	wt := &waiter{ch: make(chan lease, 1)}
	s.waiters = append(s.waiters, wt)
	s.mu.Unlock()

	var err error
	select {
	case l := <-wt.ch:
		return l, nil
	case <-ctx.Done():
		err = ctxErr(ctx.Err(), "waiting for a free worker")
	case <-s.closing:
		err = ErrClosed
	}
	s.mu.Lock()
	if i := slices.Index(s.waiters, wt); i >= 0 {
		s.waiters = slices.Delete(s.waiters, i, i+1)
		s.mu.Unlock()
		return lease{}, err
	}
	s.mu.Unlock()
	select {
	case l := <-wt.ch: // granted as we gave up: hand it back
		s.release(l, nil, 0, false)
	default:
	}
	return lease{}, err
}

// release frees l's slot, returns c to the idle set when it is reusable,
// and records the call's outcome (counted when counted is true).
func (s *Supervisor) release(l lease, c *conn, took time.Duration, counted bool, callErr ...error) {
	var toClose *conn
	s.mu.Lock()
	w := l.w
	w.inflight--
	if c != nil {
		delete(w.active, c)
		if !c.broken && w.gen == l.gen && w.state == StateReady && len(w.idle) < s.cfg.ConnsPerWorker {
			w.idle = append(w.idle, c)
		} else {
			toClose = c
		}
	}
	if counted {
		w.calls++
		w.lat.add(took)
		if len(callErr) > 0 && callErr[0] != nil {
			var me *ModelError
			if !errors.As(callErr[0], &me) {
				w.errs++
			}
		}
		switch {
		case len(callErr) > 0 && errors.Is(callErr[0], ErrTimeout) && w.gen == l.gen:
			if w.timeouts++; w.timeouts >= s.cfg.TimeoutsUnhealthy {
				w.timeouts = 0
				select {
				case w.recycle <- struct{}{}:
				default:
				}
			}
		case len(callErr) == 0 || callErr[0] == nil || errors.As(callErr[0], new(*ModelError)):
			w.timeouts = 0
		}
	}
	if s.life == lifeRunning {
		s.grantLocked()
	}
	s.mu.Unlock()
	if toClose != nil {
		toClose.close()
	}
}

// getConn returns an idle connection of l's process, or dials a new one.
func (s *Supervisor) getConn(ctx context.Context, l lease) (*conn, error) {
	s.mu.Lock()
	w := l.w
	if w.gen != l.gen {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: worker %d went down", ErrWorkerCrashed, w.idx)
	}
	if n := len(w.idle); n > 0 {
		c := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.active[c] = struct{}{}
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	nc, err := l.inst.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx.Err(), "connecting to the worker")
		}
		return nil, fmt.Errorf("%w: connect to worker %d: %w", ErrWorkerCrashed, w.idx, err)
	}
	c := newConn(nc, s.cfg.MaxFrameBytes)
	s.mu.Lock()
	if w.gen != l.gen {
		s.mu.Unlock()
		c.close()
		return nil, fmt.Errorf("%w: worker %d went down", ErrWorkerCrashed, w.idx)
	}
	w.active[c] = struct{}{}
	s.mu.Unlock()
	return c, nil
}

// Calls -----------------------------------------------------------------------

// Call sends data to model modelID (empty for control requests such as
// HealthCheckData) and returns the worker's response. The call is bounded by
// ctx and by Config.CallTimeout. Errors: ErrInvalidInput, ErrTooLarge,
// ErrSaturated, ErrTimeout, ErrWorkerCrashed, ErrProtocol, ErrClosed, the
// context's own cancellation, and *ModelError when the worker answered with
// an error (the Response is returned too).
func (s *Supervisor) Call(ctx context.Context, data, modelID string) (Response, error) {
	if modelID != "" && !modelNameRE.MatchString(modelID) {
		return Response{}, fmt.Errorf("%w: model name must match %s", ErrInvalidInput, modelNameRE)
	}
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	start := time.Now()
	resp, err := s.call(ctx, data, modelID)
	s.metrics.observe(s.modelLabel(modelID), err, time.Since(start))
	return resp, err
}

func (s *Supervisor) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= s.cfg.CallTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}

func (s *Supervisor) call(ctx context.Context, data, modelID string) (Response, error) {
	req := Request{Data: data, RequestID: newRequestID(), ModelID: modelID}
	avoid := -1
	for attempt := 0; ; attempt++ {
		l, err := s.acquire(ctx, avoid)
		if err != nil {
			return Response{}, err
		}
		resp, err := s.roundTrip(ctx, l, req)
		if err == nil && resp.Error != "" {
			return resp, &ModelError{Model: modelID, Message: resp.Error}
		}
		if err == nil {
			return resp, nil
		}
		if attempt == 0 && errors.Is(err, ErrWorkerCrashed) && s.retryable(data, modelID) {
			s.log.Info("mlbridge: retrying idempotent call on another worker", "model", modelID, "worker", l.w.idx, "err", err)
			avoid = l.w.idx
			req.RequestID = newRequestID()
			continue
		}
		return Response{}, fmt.Errorf("model %q on worker %d: %w", modelID, l.w.idx, err)
	}
}

func (s *Supervisor) roundTrip(ctx context.Context, l lease, req Request) (Response, error) {
	c, err := s.getConn(ctx, l)
	if err != nil {
		s.release(l, nil, 0, false)
		return Response{}, err
	}
	start := time.Now()
	resp, err := c.call(ctx, req, s.cancellable(req.ModelID))
	s.release(l, c, time.Since(start), true, err)
	return resp, err
}

// cancellable reports whether the workers advertised that they stop a call
// of modelID on a cancel frame.
func (s *Supervisor) cancellable(modelID string) bool {
	if modelID == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.models[modelID].Cancellable
}

func (s *Supervisor) retryable(data, modelID string) bool {
	if modelID == "" {
		return data == HealthCheckData || data == ListModelsData
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idempotent[modelID]
}

// Infer runs a structured model: input (JSON) is sent as the request's data
// string, and the result string is returned as is when it is JSON, or as a
// JSON string when it is plain text (a protocol-only worker's answer).
// Errors are those of Call.
func (s *Supervisor) Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error) {
	if model == "" {
		return nil, fmt.Errorf("%w: model name required", ErrInvalidInput)
	}
	if len(input) > s.cfg.MaxFrameBytes {
		return nil, fmt.Errorf("%w: %d-byte input, limit %d", ErrTooLarge, len(input), s.cfg.MaxFrameBytes)
	}
	if !json.Valid(input) {
		return nil, fmt.Errorf("%w: input is not valid JSON", ErrInvalidInput)
	}
	resp, err := s.Call(ctx, string(input), model)
	if err != nil {
		return nil, err
	}
	if !json.Valid([]byte(resp.Result)) {
		// The seed's protocol makes result a plain string, and a worker
		// that speaks only that protocol answers with text: pass it on as a
		// JSON string rather than refusing it.
		text, _ := json.Marshal(resp.Result)
		return text, nil
	}
	return json.RawMessage(resp.Result), nil
}

// Models asks a worker for the models it serves (the list_models request).
// Foreign workers that do not support it yield ErrUnsupported; the API can
// show an empty list then.
func (s *Supervisor) Models(ctx context.Context) ([]ModelInfo, error) {
	resp, err := s.Call(ctx, ListModelsData, "")
	var me *ModelError
	if errors.As(err, &me) {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, me.Message)
	}
	if err != nil {
		return nil, err
	}
	list, err := parseModelList(resp)
	if err != nil {
		return nil, err
	}
	s.setModels(list)
	return list, nil
}

// Status returns a snapshot of every worker slot, in index order.
func (s *Supervisor) Status() []WorkerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerStatus, 0, len(s.workers))
	for _, w := range s.workers {
		st := WorkerStatus{Index: w.idx, State: w.state, Restarts: w.restarts, InFlight: w.inflight,
			Calls: w.calls, Errors: w.errs, LatencyEWMA: w.lat.ewma, LastError: w.lastError}
		st.LatencyP50, st.LatencyP99 = w.lat.percentiles()
		if w.inst != nil {
			st.PID = w.pid
		}
		if w.state == StateReady {
			st.Uptime = time.Since(w.readyAt)
		}
		out = append(out, st)
	}
	return out
}

// modelLabel bounds the metric label set: names not in a listing or in
// Config.Idempotent (callers choose model names) are counted as "other".
func (s *Supervisor) modelLabel(model string) string {
	if model == "" {
		return "_control"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.models[model]; ok || s.idempotent[model] {
		return model
	}
	return "other"
}

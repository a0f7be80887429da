package mlbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countFiles counts files in dir whose name starts with prefix.
func countFiles(t testing.TB, dir, prefix string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			n++
		}
	}
	return n
}

func release(t testing.TB, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// children lists the live processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		// After the command: state, ppid, pgrp, …
		if len(f) > 2 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

func metricValue(t testing.TB, s *mlbridge.Supervisor, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range s.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestSupervisor_Models(t *testing.T) {
	s := mustStart(t, sdkWithTestModels(t))
	list, err := s.Models(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range list {
		got[m.Name] = m.Idempotent
	}
	for name, idem := range map[string]bool{"heap-trend": true, "telemetry-anomaly": true, "summarize": true,
		"barrier": false, "hold-once": true} {
		if v, ok := got[name]; !ok || v != idem {
			t.Errorf("model %s: listed %v, idempotent %v; want idempotent %v", name, ok, v, idem)
		}
	}
}

func TestSupervisor_BuiltinModels(t *testing.T) {
	s := mustStart(t, mlbridge.Config{Workers: 1})
	ctx := ctxTimeout(t, 20*time.Second)
	out, err := s.Infer(ctx, "telemetry-anomaly", json.RawMessage(`{"points":[[0,10],[1,10],[2,11],[3,9],[4,10],[5,50],[6,10],[7,11],[8,9],[9,10]]}`))
	if err != nil {
		t.Fatal(err)
	}
	var an struct {
		Anomalies []struct {
			Index int     `json:"index"`
			Score float64 `json:"score"`
		} `json:"anomalies"`
	}
	if err := json.Unmarshal(out, &an); err != nil || len(an.Anomalies) != 1 || an.Anomalies[0].Index != 5 || an.Anomalies[0].Score != 53.96 {
		t.Fatalf("anomalies %+v (%v) from %s; want index 5 with score 53.96", an, err, out)
	}
	out, err = s.Infer(ctx, "summarize", mustJSON(t, map[string]any{"max_sentences": 1, "messages": []map[string]any{
		{"from": "ann", "body": "The database migration runs on Friday before the deploy."},
		{"from": "bob", "body": "ok"},
		{"from": "cy", "body": "Friday works, the migration script for the database is ready."},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Summary string `json:"summary"`
	}
	if err := json.Unmarshal(out, &sum); err != nil || !strings.Contains(sum.Summary, "migration") {
		t.Fatalf("summary %q (%v)", sum.Summary, err)
	}
}

func TestSupervisor_Errors(t *testing.T) {
	s := mustStart(t, mlbridge.Config{Workers: 1, MaxFrameBytes: 4096, Modules: []string{testdata(t, "testmodels.py")}})
	ctx := ctxTimeout(t, 20*time.Second)
	var me *mlbridge.ModelError

	_, err := s.Infer(ctx, "heap-trend", json.RawMessage(`{"series":[]}`))
	if !errors.As(err, &me) || !strings.Contains(me.Message, "series") {
		t.Errorf("bad model input: %v, want a ModelError about series", err)
	}
	_, err = s.Infer(ctx, "no-such-model", json.RawMessage(`{}`))
	if !errors.As(err, &me) || !strings.Contains(me.Message, "unknown model") {
		t.Errorf("unknown model: %v", err)
	}
	_, err = s.Infer(ctx, "boom", json.RawMessage(`{}`))
	if !errors.As(err, &me) || strings.Contains(err.Error(), "secret") || !strings.Contains(me.Message, "RuntimeError") {
		t.Errorf("crashing model: %v; want its type but not its message", err)
	}
	// A plain-text result (what a protocol-only worker sends) comes back
	// as a JSON string.
	if out, err := s.Infer(ctx, "not-json", json.RawMessage(`{}`)); err != nil || string(out) != `"this is not json"` {
		t.Errorf("plain-text result: %s, %v; want the text as a JSON string", out, err)
	}
	for _, name := range []string{"", "../etc", "a b", strings.Repeat("m", 200), "ünicode"} {
		if _, err = s.Infer(ctx, name, json.RawMessage(`{}`)); !errors.Is(err, mlbridge.ErrInvalidInput) {
			t.Errorf("model name %.20q: %v, want ErrInvalidInput", name, err)
		}
	}
	if _, err = s.Infer(ctx, "echo", json.RawMessage(`{"a":`)); !errors.Is(err, mlbridge.ErrInvalidInput) {
		t.Errorf("invalid JSON input: %v", err)
	}
	big := mustJSON(t, map[string]string{"x": strings.Repeat("y", 5000)})
	if _, err = s.Infer(ctx, "echo", big); !errors.Is(err, mlbridge.ErrTooLarge) {
		t.Errorf("oversized input: %v, want ErrTooLarge", err)
	}
	// Escaping makes this one grow past the limit only once encoded.
	quoted := mustJSON(t, map[string]string{"x": strings.Repeat(`"`, 2100)})
	if _, err = s.Infer(ctx, "echo", quoted); !errors.Is(err, mlbridge.ErrTooLarge) {
		t.Errorf("input too large once encoded: %v, want ErrTooLarge", err)
	}
	// A result over the limit is refused by the worker, not sent.
	_, err = s.Infer(ctx, "grow", json.RawMessage(`{"n":5000}`))
	if !errors.As(err, &me) || !strings.Contains(me.Message, "not sendable") {
		t.Errorf("result over the frame limit: %v", err)
	}
	_, err = s.Infer(ctx, "pool-crash", json.RawMessage(`{}`))
	if !errors.As(err, &me) || !strings.Contains(me.Message, "model process crashed") {
		t.Errorf("model killing its pool process: %v", err)
	}
	if _, err := s.Infer(ctx, "heap-trend", json.RawMessage(`{"series":[[0,3],[1,2],[2,1]]}`)); err != nil {
		t.Errorf("process pool not rebuilt: %v", err)
	}
	out, err := s.Infer(ctx, "echo", json.RawMessage(`{"still":"fine"}`))
	if err != nil || string(out) != `{"still":"fine"}` {
		t.Fatalf("after the errors: %s, %v", out, err)
	}
	if n := metricValue(t, s, "unhidra_ml_calls_total", map[string]string{"model": "other", "outcome": "model_error"}); n != 1 {
		t.Errorf("unknown model counted under model=other: %v", n)
	}
	if n := metricValue(t, s, "unhidra_ml_calls_total", map[string]string{"model": "heap-trend", "outcome": "model_error"}); n != 1 {
		t.Errorf("heap-trend model errors: %v", n)
	}
}

// TestSupervisor_Concurrency proves K-way parallelism without timing: the
// barrier model answers only once K requests are inside the workers at the
// same moment, and fails after its own timeout otherwise.
func TestSupervisor_Concurrency(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.ConnsPerWorker = 2, 2
	s := mustStart(t, cfg)
	run := func(k, calls int, timeout float64) ([]int, []error) {
		dir := shortDir(t)
		pids := make([]int, calls)
		errs := make([]error, calls)
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				out, err := s.Infer(ctxTimeout(t, 30*time.Second), "barrier",
					mustJSON(t, map[string]any{"dir": dir, "k": k, "timeout": timeout}))
				errs[i] = err
				var r struct{ PID int }
				if err == nil {
					json.Unmarshal(out, &r)
				}
				pids[i] = r.PID
			})
		}
		wg.Wait()
		return pids, errs
	}
	t.Run("FourAtOnce", func(t *testing.T) {
		pids, errs := run(4, 4, 20)
		perPID := map[int]int{}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			perPID[pids[i]]++
		}
		if len(perPID) != 2 {
			t.Fatalf("calls per worker pid %v; want both workers used, two each", perPID)
		}
	})
	t.Run("FiveCannotMeet", func(t *testing.T) {
		// The control: 4 connections cannot hold 5 requests at once, so the
		// barrier must fail. This is what makes the test above meaningful.
		_, errs := run(5, 5, 0.5)
		failed := 0
		for _, err := range errs {
			var me *mlbridge.ModelError
			if errors.As(err, &me) {
				failed++
			}
		}
		if failed == 0 {
			t.Fatal("a 5-way barrier passed over 4 connections")
		}
	})
}

// TestSupervisor_ProcessPool: CPU-bound models run in the worker's process
// pool, several at once, while the event loop keeps answering.
func TestSupervisor_ProcessPool(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.ProcessesPerWorker, cfg.ConnsPerWorker = 1, 2, 4
	s := mustStart(t, cfg)
	dir := shortDir(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = s.Infer(ctxTimeout(t, 30*time.Second), "cpu-hold", mustJSON(t, map[string]any{"dir": dir}))
		})
	}
	eventually(t, "two CPU-bound calls running in the pool", func() bool { return countFiles(t, dir, "cpu.") == 2 })
	// Both pool processes are blocked; the event loop must still answer.
	if out, err := s.Infer(ctxTimeout(t, 10*time.Second), "echo", json.RawMessage(`[1]`)); err != nil || string(out) != "[1]" {
		t.Fatalf("event loop stalled by CPU-bound models: %s, %v", out, err)
	}
	if _, err := s.Call(ctxTimeout(t, 10*time.Second), mlbridge.HealthCheckData, ""); err != nil {
		t.Fatalf("health check while the pool is busy: %v", err)
	}
	release(t, dir)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSupervisor_TimeoutNoDesync: a timed-out connection is closed, so the
// late reply can never be read as the answer to the next call.
func TestSupervisor_TimeoutNoDesync(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.ConnsPerWorker = 1, 1
	s := mustStart(t, cfg)
	dir := shortDir(t)
	_, err := s.Infer(ctxTimeout(t, time.Second), "hold", mustJSON(t, map[string]any{"dir": dir, "reply": "A"}))
	if !errors.Is(err, mlbridge.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("held call: %v, want ErrTimeout", err)
	}
	// Let the held call finish: its reply "A" goes out on the old
	// connection. Had that connection been reused, the next call would read
	// "A" (and fail on the request_id check).
	release(t, dir)
	for i := range 3 {
		want := fmt.Sprintf(`{"reply":"B%d"}`, i)
		out, err := s.Infer(ctxTimeout(t, 10*time.Second), "echo", json.RawMessage(want))
		if err != nil || string(out) != want {
			t.Fatalf("call after the timeout: %s, %v; want %s", out, err, want)
		}
	}
	if n := metricValue(t, s, "unhidra_ml_calls_total", map[string]string{"model": "hold", "outcome": "timeout"}); n != 1 {
		t.Errorf("timeouts counted: %v", n)
	}
}

func TestSupervisor_Canceled(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.ConnsPerWorker = 1, 1
	s := mustStart(t, cfg)
	dir := shortDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Infer(ctx, "hold", mustJSON(t, map[string]any{"dir": dir}))
		errc <- err
	}()
	eventually(t, "the call to reach the worker", func() bool { return countFiles(t, dir, "in.") == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled call: %v", err)
	}
	if _, err := s.Infer(ctxTimeout(t, 10*time.Second), "echo", json.RawMessage(`1`)); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisor_WorkerKilledMidRequest: the caller learns at once (long
// before its own deadline) that the worker died; the worker comes back.
func TestSupervisor_WorkerKilledMidRequest(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.RestartBackoff = 1, 10*time.Millisecond
	s := mustStart(t, cfg)
	dir := shortDir(t)
	pid := s.Status()[0].PID
	errc := make(chan error, 1)
	go func() {
		_, err := s.Infer(ctxTimeout(t, 10*time.Minute), "hold", mustJSON(t, map[string]any{"dir": dir, "timeout": 600}))
		errc <- err
	}()
	eventually(t, "the call to reach the worker", func() bool { return countFiles(t, dir, "in.") == 1 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The deadline is ten minutes away: anything but ErrWorkerCrashed here
	// (a timeout, a hang) fails the test.
	if err := <-errc; !errors.Is(err, mlbridge.ErrWorkerCrashed) {
		t.Fatalf("call on a killed worker: %v, want ErrWorkerCrashed", err)
	}
	eventually(t, "the worker to restart", func() bool {
		st := s.Status()[0]
		return st.State == mlbridge.StateReady && st.PID != pid && st.PID != 0
	})
	if st := s.Status()[0]; st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}
	if out, err := s.Infer(ctxTimeout(t, 10*time.Second), "echo", json.RawMessage(`"back"`)); err != nil || string(out) != `"back"` {
		t.Fatalf("after restart: %s, %v", out, err)
	}
	if n := metricValue(t, s, "unhidra_ml_worker_restarts_total", nil); n != 1 {
		t.Errorf("restart metric %v", n)
	}
}

// TestSupervisor_IdempotentRetry: a call of an idempotent model whose worker
// dies is retried once on the other worker and succeeds.
func TestSupervisor_IdempotentRetry(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers = 2
	s := mustStart(t, cfg)
	dir := shortDir(t)
	type result struct {
		out json.RawMessage
		err error
	}
	res := make(chan result, 1)
	go func() {
		out, err := s.Infer(ctxTimeout(t, 10*time.Minute), "hold-once", mustJSON(t, map[string]any{"dir": dir}))
		res <- result{out, err}
	}()
	var victim int
	eventually(t, "the first call to hang in a worker", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "first"))
		if err != nil || len(b) == 0 {
			return false
		}
		victim, _ = strconv.Atoi(string(b))
		return victim > 0
	})
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("idempotent call after a crash: %v, want a retried success", r.err)
	}
	var got struct{ PID int }
	if err := json.Unmarshal(r.out, &got); err != nil || got.PID == victim || got.PID == 0 {
		t.Fatalf("answered by pid %d (%v), want the other worker, not %d", got.PID, err, victim)
	}
}

// TestSupervisor_Saturated: with every connection busy and the queue full,
// calls fail at once with ErrSaturated; queued ones run when a slot frees.
func TestSupervisor_Saturated(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.ConnsPerWorker, cfg.QueueSize = 1, 1, 1
	s := mustStart(t, cfg)
	dir := shortDir(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = s.Infer(ctxTimeout(t, time.Minute), "hold", mustJSON(t, map[string]any{"dir": dir}))
		})
		if i == 0 {
			eventually(t, "the first call in the worker", func() bool { return countFiles(t, dir, "in.") == 1 })
		}
	}
	eventually(t, "the second call queued", func() bool {
		return metricValue(t, s, "unhidra_ml_queue_depth", nil) == 1
	})
	if _, err := s.Infer(ctxTimeout(t, time.Minute), "echo", json.RawMessage(`1`)); !errors.Is(err, mlbridge.ErrSaturated) {
		t.Fatalf("third call: %v, want ErrSaturated", err)
	}
	if st := s.Status()[0]; st.InFlight != 1 {
		t.Errorf("in flight %d, want 1", st.InFlight)
	}
	release(t, dir)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if n := metricValue(t, s, "unhidra_ml_calls_total", map[string]string{"outcome": "saturated"}); n != 1 {
		t.Errorf("saturated calls counted: %v", n)
	}
}

func TestSupervisor_Status(t *testing.T) {
	s := mustStart(t, sdkWithTestModels(t))
	for range 5 {
		if _, err := s.Infer(ctxTimeout(t, 10*time.Second), "echo", json.RawMessage(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	var calls uint64
	for i, st := range s.Status() {
		if st.Index != i || st.State != mlbridge.StateReady || st.PID <= 0 || st.Uptime <= 0 || st.InFlight != 0 {
			t.Errorf("worker %d: %+v", i, st)
		}
		calls += st.Calls
		if st.Calls > 0 && (st.LatencyP50 <= 0 || st.LatencyP99 < st.LatencyP50 || st.LatencyEWMA <= 0) {
			t.Errorf("worker %d latency: %+v", i, st)
		}
	}
	if calls != 5 {
		t.Errorf("calls %d, want 5", calls)
	}
}

func TestSupervisor_Lifecycle(t *testing.T) {
	s, err := mlbridge.New(mlbridge.Config{Workers: 1, Dir: shortDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Call(context.Background(), "x", "m"); !errors.Is(err, mlbridge.ErrClosed) {
		t.Errorf("call before Start: %v", err)
	}
	if err := s.Start(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := s.Close(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Call(context.Background(), "x", "m"); !errors.Is(err, mlbridge.ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}
}

func TestConfig_HostileValues(t *testing.T) {
	for _, cfg := range []mlbridge.Config{
		{Workers: -1}, {Workers: 1000}, {ConnsPerWorker: 100000}, {MaxFrameBytes: -5}, {MaxFrameBytes: 10},
		{MaxFrameBytes: 1<<30 + 1}, {Idempotent: []string{"bad name"}}, {ProcessesPerWorker: -1},
	} {
		if _, err := mlbridge.New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	long := filepath.Join(shortDir(t), strings.Repeat("d", 90))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := mlbridge.New(mlbridge.Config{Workers: 1, Dir: long}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "shorter Dir") {
		t.Fatalf("Start with a long Dir: %v", err)
	}
	if n := countFiles(t, long, ""); n != 0 {
		t.Errorf("failed Start left %d entries", n)
	}
}

// TestSupervisor_TimeoutsRecycleWorker: two consecutive calls timing out
// on a wedged worker mark it unhealthy; it is restarted (a new process)
// and answers again.
func TestSupervisor_TimeoutsRecycleWorker(t *testing.T) {
	cfg := sdkWithTestModels(t)
	cfg.Workers, cfg.ConnsPerWorker = 1, 4
	s := mustStart(t, cfg)
	pid := s.Status()[0].PID
	for range 2 {
		dir := shortDir(t)
		_, err := s.Infer(ctxTimeout(t, 500*time.Millisecond), "hold", mustJSON(t, map[string]any{"dir": dir, "reply": "A"}))
		if !errors.Is(err, mlbridge.ErrTimeout) {
			t.Fatalf("held call: %v, want ErrTimeout", err)
		}
	}
	eventually(t, "the wedged worker to be replaced", func() bool {
		st := s.Status()[0]
		return st.State == mlbridge.StateReady && st.PID != 0 && st.PID != pid
	})
	if out, err := s.Infer(ctxTimeout(t, 10*time.Second), "echo", json.RawMessage(`{"reply":"ok"}`)); err != nil || string(out) != `{"reply":"ok"}` {
		t.Fatalf("after recycling: %s %v", out, err)
	}
}

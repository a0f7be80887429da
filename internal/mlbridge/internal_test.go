package mlbridge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/unhidra/unhidra/internal/backoff"
)

func TestBackoff(t *testing.T) {
	b := backoff.Backoff{Initial: 250 * time.Millisecond, Max: 2 * time.Second, Factor: 2}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 250*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
	j := backoff.Backoff{Initial: time.Second, Max: time.Minute, Factor: 2, Jitter: 0.2}
	for range 100 {
		if d := j.Next(); d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jittered first delay %v outside ±20%%", d)
		}
		j.Reset()
	}
}

// fakeInst is a worker process the run loop can supervise under fake time.
type fakeInst struct {
	id       int
	exit     chan struct{}
	once     sync.Once
	healthFn func() error
}

func newFake(id int) *fakeInst { return &fakeInst{id: id, exit: make(chan struct{})} }

func (f *fakeInst) pid() int                            { return 1000 + f.id }
func (f *fakeInst) done() <-chan struct{}               { return f.exit }
func (f *fakeInst) exitErr() error                      { return errors.New("fake exit") }
func (f *fakeInst) kill()                               { f.once.Do(func() { close(f.exit) }) }
func (f *fakeInst) stop(time.Duration, <-chan struct{}) { f.kill() }
func (f *fakeInst) dial(context.Context) (net.Conn, error) {
	return nil, errors.New("fake: no connections")
}
func (f *fakeInst) listModels(context.Context) ([]ModelInfo, error) { return nil, ErrUnsupported }
func (f *fakeInst) health(context.Context) error {
	if f.healthFn != nil {
		return f.healthFn()
	}
	return nil
}

func newTestSupervisor(t *testing.T, cfg Config) *Supervisor {
	t.Helper()
	cfg.jitter = -1
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.life = lifeRunning
	return s
}

// TestRunWorker_RestartBackoff drives the restart loop with fake processes
// and fake time: delays double after each crash in a row and start over
// after a run that stayed up for a minute.
func TestRunWorker_RestartBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSupervisor(t, Config{Workers: 1, RestartBackoff: 100 * time.Millisecond, MaxRestartBackoff: time.Second})
		var launches []time.Time
		launched := make(chan *fakeInst)
		s.launch = func(ctx context.Context, _ *Supervisor, idx int) (instance, error) {
			launches = append(launches, time.Now())
			f := newFake(len(launches))
			select {
			case launched <- f:
				return f, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.wg.Add(1)
		go s.runWorker(ctx, s.workers[0], nil)

		// Crash each instance as soon as it is up, six times in a row.
		for range 6 {
			(<-launched).kill()
		}
		// The seventh stays up for two minutes, then crashes, and so does the eighth.
		f := <-launched
		time.Sleep(2 * time.Minute)
		f.kill()
		(<-launched).kill()
		<-launched // the ninth launch closes the last gap
		cancel()
		s.wg.Wait()

		var gaps []time.Duration
		for i := 1; i < len(launches); i++ {
			gaps = append(gaps, launches[i].Sub(launches[i-1]))
		}
		ms := time.Millisecond
		want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second,
			2*time.Minute + 100*ms, 200 * ms}
		if len(gaps) != len(want) {
			t.Fatalf("gaps %v, want %v", gaps, want)
		}
		for i := range want {
			if gaps[i] != want[i] {
				t.Fatalf("gaps %v, want %v", gaps, want)
			}
		}
		if st := s.Status()[0]; st.Restarts != 8 {
			t.Fatalf("restarts %d, want 8", st.Restarts)
		}
	})
}

// TestRunWorker_UnhealthyRestart: consecutive failed health checks restart
// the worker; a single failure does not.
func TestRunWorker_UnhealthyRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSupervisor(t, Config{Workers: 1, HealthInterval: time.Second, UnhealthyAfter: 3})
		var insts []*fakeInst
		checks := 0
		s.launch = func(ctx context.Context, _ *Supervisor, idx int) (instance, error) {
			f := newFake(len(insts))
			if len(insts) == 0 {
				// fail, ok, then fail for good
				f.healthFn = func() error {
					checks++
					if checks == 2 {
						return nil
					}
					return errors.New("sick")
				}
			}
			insts = append(insts, f)
			return f, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.wg.Add(1)
		go s.runWorker(ctx, s.workers[0], nil)
		time.Sleep(4*time.Second + time.Millisecond)
		synctest.Wait()
		if len(insts) != 1 || s.Status()[0].State != StateReady {
			t.Fatalf("restarted too early: %d launches, state %s", len(insts), s.Status()[0].State)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := s.Status()[0]; st.State != StateBackoff || !strings.Contains(st.LastError, "unhealthy") {
			t.Fatalf("after 3 failures in a row: state %s, last error %q", st.State, st.LastError)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if len(insts) != 2 || s.Status()[0].State != StateReady {
			t.Fatalf("not restarted: %d launches", len(insts))
		}
		cancel()
		s.wg.Wait()
	})
}

func readyFakes(s *Supervisor) {
	for i, w := range s.workers {
		w.state, w.inst = StateReady, newFake(i)
	}
}

func TestDispatch_LeastLoaded(t *testing.T) {
	s := newTestSupervisor(t, Config{Workers: 3, ConnsPerWorker: 2, QueueSize: -1})
	readyFakes(s)
	ctx := context.Background()
	var got []lease
	for range 6 {
		l, err := s.acquire(ctx, -1)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	for _, w := range s.workers {
		if w.inflight != 2 {
			t.Fatalf("worker %d has %d in flight; want the load spread 2/2/2", w.idx, w.inflight)
		}
	}
	if _, err := s.acquire(ctx, -1); !errors.Is(err, ErrSaturated) {
		t.Fatalf("no queue, all busy: %v, want ErrSaturated", err)
	}
	// Free two slots on worker 1: the next two calls go there.
	for _, l := range got {
		if l.w.idx == 1 {
			s.release(l, nil, 0, false)
		}
	}
	for range 2 {
		l, err := s.acquire(ctx, -1)
		if err != nil || l.w.idx != 1 {
			t.Fatalf("got worker %v, %v; want the least-loaded worker 1", l.w, err)
		}
	}
}

func TestDispatch_AvoidPrefersAnotherWorker(t *testing.T) {
	s := newTestSupervisor(t, Config{Workers: 2, ConnsPerWorker: 4})
	readyFakes(s)
	s.workers[1].inflight = 3 // busier, but not the one to avoid
	l, err := s.acquire(context.Background(), 0)
	if err != nil || l.w.idx != 1 {
		t.Fatalf("got %v, %v; want worker 1", l.w.idx, err)
	}
	s.workers[0].state = StateBackoff
	s.workers[1].state = StateBackoff
	if _, ok := s.pickLocked(0); ok {
		t.Fatal("picked a worker that is not ready")
	}
}

// TestDispatch_Queue: callers wait in arrival order up to QueueSize; beyond
// it they get ErrSaturated; a waiter whose context ends leaves the queue.
func TestDispatch_Queue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSupervisor(t, Config{Workers: 1, ConnsPerWorker: 1, QueueSize: 2})
		readyFakes(s)
		first, err := s.acquire(context.Background(), -1)
		if err != nil {
			t.Fatal(err)
		}
		order := make(chan int, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := s.acquire(context.Background(), -1)
				if err != nil {
					t.Error(err)
					return
				}
				order <- i
				s.release(l, nil, 0, false)
			}()
			synctest.Wait() // i is queued before i+1
		}
		if _, err := s.acquire(context.Background(), -1); !errors.Is(err, ErrSaturated) {
			t.Fatalf("third waiter: %v, want ErrSaturated", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.mu.Lock()
		s.cfg.QueueSize = 3
		s.mu.Unlock()
		if _, err := s.acquire(ctx, -1); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiter past its deadline: %v, want ErrTimeout", err)
		}
		if n := len(s.waiters); n != 2 {
			t.Fatalf("%d waiters after a timeout, want 2", n)
		}
		s.release(first, nil, 0, false)
		wg.Wait()
		if a, b := <-order, <-order; a != 0 || b != 1 {
			t.Fatalf("served in order %d, %d; want 0, 1", a, b)
		}
	})
}

func TestDispatch_CloseWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestSupervisor(t, Config{Workers: 1, ConnsPerWorker: 1})
		readyFakes(s)
		if _, err := s.acquire(context.Background(), -1); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error)
		go func() {
			_, err := s.acquire(context.Background(), -1)
			errc <- err
		}()
		synctest.Wait()
		s.markClosed()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter at close: %v, want ErrClosed", err)
		}
		if _, err := s.acquire(context.Background(), -1); !errors.Is(err, ErrClosed) {
			t.Fatalf("after close: %v", err)
		}
	})
}

// captureHandler records log records for assertions.
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}

func TestLogWriter(t *testing.T) {
	h := &captureHandler{}
	w := &logWriter{log: slog.New(h), idx: 3, stream: "stderr", tail: &lineTail{}}
	w.Write([]byte(`{"ts":1,"level":"warn","msg":"pool broke","model":"heap-trend"}` + "\nplain "))
	w.Write([]byte("text\n"))
	w.Write([]byte(strings.Repeat("x", 3*maxLogLine))) // hostile: one endless line
	w.Write([]byte(strings.Repeat("y", 10) + "\nafter\n"))
	w.Write([]byte("{\"msg\": 5}\n\xff\xfe bad utf8\n"))
	if len(h.recs) != 6 {
		t.Fatalf("%d records, want 6", len(h.recs))
	}
	r := h.recs[0]
	if r.Level != slog.LevelWarn || r.Message != "ml worker: pool broke" || attrs(r)["model"] != "heap-trend" || attrs(r)["worker"] != "3" {
		t.Errorf("JSON line: %v %q %v", r.Level, r.Message, attrs(r))
	}
	if h.recs[1].Message != "ml worker: plain text" {
		t.Errorf("plain line: %q", h.recs[1].Message)
	}
	long := h.recs[2]
	if len(long.Message) != len("ml worker: ")+maxLogLine || attrs(long)["truncated"] != "true" {
		t.Errorf("long line: %d bytes, attrs %v", len(long.Message), attrs(long))
	}
	if h.recs[3].Message != "ml worker: after" {
		t.Errorf("line after the long one: %q", h.recs[3].Message)
	}
	if h.recs[4].Message != `ml worker: {"msg": 5}` {
		t.Errorf("JSON without a string msg is logged verbatim: %q", h.recs[4].Message)
	}
	if m := h.recs[5].Message; !utf8.ValidString(m) || !strings.HasSuffix(m, " bad utf8") {
		t.Errorf("invalid UTF-8 is replaced: %q", m)
	}
	if tail := w.tail.String(); !strings.Contains(tail, "after") || strings.Count(tail, "|") != tailLines-1 {
		t.Errorf("tail %q", tail)
	}
}

func TestParseModelList(t *testing.T) {
	list, err := parseModelList(Response{Result: `{"models":[{"name":"a","idempotent":true},{"name":"b.c-1","description":"` + strings.Repeat("d", 5000) + `"}]}`})
	if err != nil || len(list) != 2 || !list[0].Idempotent || len(list[1].Description) != 1000 {
		t.Fatalf("got %+v, %v", list, err)
	}
	many := `{"models":[` + strings.Repeat(`{"name":"m"},`, maxModels) + `{"name":"m"}]}`
	hostile := map[string]struct {
		resp Response
		want error
	}{
		"ForeignAnswer": {Response{Result: "processed: list_models"}, ErrUnsupported},
		"ErrorAnswer":   {Response{Error: "unknown model"}, ErrUnsupported},
		"NoModelsKey":   {Response{Result: `{"x":[]}`}, ErrUnsupported},
		"ModelsNotList": {Response{Result: `{"models":5}`}, ErrUnsupported},
		"TooMany":       {Response{Result: many}, ErrProtocol},
		"BadName":       {Response{Result: `{"models":[{"name":"../x"}]}`}, ErrProtocol},
		"EmptyName":     {Response{Result: `{"models":[{"name":""}]}`}, ErrProtocol},
	}
	for name, tc := range hostile {
		t.Run(name, func(t *testing.T) {
			if _, err := parseModelList(tc.resp); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

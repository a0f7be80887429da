package mlbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

// msgLog records the messages logged through it (the workers' included).
type msgLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *msgLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *msgLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *msgLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *msgLog) WithGroup(string) slog.Handler      { return l }

func (l *msgLog) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// spinPID waits for the spin model to mark its arrival and returns the pid
// of the process computing it.
func spinPID(t *testing.T, dir string) int {
	t.Helper()
	var pid int
	eventually(t, "the spin call to start computing", func() bool {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "spin.") {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if p, perr := strconv.Atoi(string(b)); err == nil && perr == nil && p > 0 {
					pid = p
					return true
				}
			}
		}
		return false
	})
	return pid
}

// TestSupervisor_CancelStopsComputation: a long CPU-bound call that is
// cancelled by its caller, or that times out, is stopped inside the real
// Python worker: the process computing it is gone, the worker logs the
// cancellation, and the next call on the same single-process worker is
// answered although the cancelled computation had a minute left to run.
func TestSupervisor_CancelStopsComputation(t *testing.T) {
	for _, how := range []string{"cancel", "timeout"} {
		t.Run(how, func(t *testing.T) {
			logs := &msgLog{}
			cfg := sdkWithTestModels(t)
			cfg.Workers, cfg.ProcessesPerWorker, cfg.ConnsPerWorker = 1, 1, 2
			cfg.TimeoutsUnhealthy = 100 // the recycling of a wedged worker must not be what stops it
			s, err := mlbridge.New(cfg, slog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(ctxTimeout(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close(context.Background()) })
			workerPID := s.Status()[0].PID
			// Start the pool's child before the timed call: its 3 s are then
			// the computation's, not a cold interpreter start's (seconds on
			// a loaded machine, and the call ended before spin could begin).
			if _, err := s.Infer(ctxTimeout(t, 20*time.Second), "cpu-barrier",
				mustJSON(t, map[string]any{"dir": shortDir(t), "k": 1})); err != nil {
				t.Fatalf("warm-up call: %v", err)
			}

			dir := shortDir(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if how == "timeout" {
				ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
			}
			errc := make(chan error, 1)
			go func() {
				_, err := s.Infer(ctx, "spin", mustJSON(t, map[string]any{"dir": dir, "seconds": 60}))
				errc <- err
			}()
			pid := spinPID(t, dir)
			if how == "cancel" {
				cancel()
			}
			err = <-errc
			if how == "cancel" && !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled call: %v", err)
			}
			if how == "timeout" && !errors.Is(err, mlbridge.ErrTimeout) {
				t.Fatalf("timed-out call: %v", err)
			}
			eventually(t, "the process computing the call to be gone", func() bool { return !alive(pid) })
			eventually(t, "the worker to log the cancellation", func() bool {
				return logs.count("call cancelled by the supervisor") == 1
			})
			// The pool's only process slot is free again: a process-pool call
			// is answered long before the cancelled one would have ended.
			out, err := s.Infer(ctxTimeout(t, 20*time.Second), "cpu-barrier",
				mustJSON(t, map[string]any{"dir": shortDir(t), "k": 1}))
			if err != nil {
				t.Fatalf("call after the cancelled one: %v", err)
			}
			var got struct{ PID int }
			if err := json.Unmarshal(out, &got); err != nil || got.PID == pid || got.PID == 0 {
				t.Fatalf("answer %s (err %v): want a fresh process, not %d", out, err, pid)
			}
			if st := s.Status()[0]; st.PID != workerPID || st.Restarts != 0 {
				t.Fatalf("the worker was restarted (%+v): the cancel, not a recycle, must stop the call", st)
			}
		})
	}
}

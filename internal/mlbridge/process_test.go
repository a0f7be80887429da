package mlbridge_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

func hostile(t testing.TB, mode string) mlbridge.Config {
	return mlbridge.Config{
		Workers: 1, ConnsPerWorker: 1, MaxFrameBytes: 1024,
		Command:        []string{python3, testdata(t, "hostile_worker.py"), mode},
		StartTimeout:   20 * time.Second,
		RestartBackoff: 10 * time.Millisecond,
	}
}

// TestSupervisor_HostileWorker: garbage, oversized, empty, mismatched and
// truncated replies fail the call with the right error, never hang it, and
// never poison the next call (the connection is replaced).
func TestSupervisor_HostileWorker(t *testing.T) {
	cases := []struct {
		mode string
		want error
	}{
		{"garbage", mlbridge.ErrProtocol},
		{"oversize", mlbridge.ErrFrameTooLarge},
		{"bigframe", mlbridge.ErrFrameTooLarge},
		{"zero", mlbridge.ErrEmptyFrame},
		{"mismatch", mlbridge.ErrProtocol},
		{"notobject", mlbridge.ErrProtocol},
		{"noresult", mlbridge.ErrProtocol},
		{"partial", mlbridge.ErrTimeout},
		{"silent", mlbridge.ErrTimeout},
		{"exit", mlbridge.ErrWorkerCrashed},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			s := mustStart(t, hostile(t, tc.mode))
			for range 2 { // twice: the second call must not see the first's leftovers
				_, err := s.Call(ctxTimeout(t, 2*time.Second), "{}", "m")
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				// A fresh connection still works (after a restart for "exit").
				eventually(t, "a healthy worker", func() bool {
					_, err := s.Call(ctxTimeout(t, 2*time.Second), mlbridge.HealthCheckData, "")
					return err == nil
				})
			}
		})
	}
}

// TestSupervisor_NeverReady: Start fails clearly, within StartTimeout, and
// leaves no process or file behind.
func TestSupervisor_NeverReady(t *testing.T) {
	cases := []struct {
		mode     string
		want     error
		contains string
	}{
		{"nothealthy", mlbridge.ErrTimeout, "unhealthy answer"},
		{"nobind", mlbridge.ErrTimeout, "no healthy answer"},
		{"crashstart", nil, "crashing on purpose"},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			dir := shortDir(t)
			cfg := hostile(t, tc.mode)
			cfg.Workers, cfg.Dir, cfg.StartTimeout = 2, dir, 15*time.Second // Python alone took 2.5 s to start on a loaded 2-core CI machine
			s, err := mlbridge.New(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			err = s.Start(ctxTimeout(t, 30*time.Second))
			if err == nil {
				s.Close(context.Background())
				t.Fatal("Start succeeded")
			}
			if (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Start: %v; want %v mentioning %q", err, tc.want, tc.contains)
			}
			if n := countFiles(t, dir, ""); n != 0 {
				t.Errorf("failed Start left %d entries in Dir", n)
			}
			if kids := children(os.Getpid()); len(kids) != 0 {
				// Other parallel tests may have workers: only fail on hostile ones.
				for _, k := range kids {
					if b, _ := os.ReadFile("/proc/" + strconv.Itoa(k) + "/cmdline"); strings.Contains(string(b), tc.mode) {
						t.Errorf("worker %d (%s) left running", k, tc.mode)
					}
				}
			}
		})
	}
}

// TestSupervisor_ProtocolOnlyWorker: the seed-style mock, which knows
// nothing but the protocol, works unmodified.
func TestSupervisor_ProtocolOnlyWorker(t *testing.T) {
	s := mustStart(t, mlbridge.Config{Workers: 2, Command: []string{python3, testdata(t, "mock_worker.py")},
		HealthTimeout: 2 * time.Second})
	resp, err := s.Call(ctxTimeout(t, 10*time.Second), "hello sensor", "any-model")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Result != "processed: hello sensor" || resp.ProcessingTimeMs != 500 {
		t.Fatalf("response %+v", resp)
	}
	if _, err := s.Models(ctxTimeout(t, 10*time.Second)); !errors.Is(err, mlbridge.ErrUnsupported) {
		t.Errorf("Models on a foreign worker: %v, want ErrUnsupported", err)
	}
	// Through Infer (and so the HTTP API) its text answer arrives as a JSON string.
	if out, err := s.Infer(ctxTimeout(t, 10*time.Second), "x", []byte(`{}`)); err != nil || string(out) != `"processed: {}"` {
		t.Errorf("Infer on a worker answering plain text: %s, %v", out, err)
	}
}

// TestSupervisor_Permissions: the private directory is 0700 and ours, the
// SDK's sockets 0600, and nothing under it is readable by others.
func TestSupervisor_Permissions(t *testing.T) {
	parent := shortDir(t)
	mustStart(t, mlbridge.Config{Workers: 2, Dir: parent})
	ents, err := os.ReadDir(parent)
	if err != nil || len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), "unhidra-ml-") {
		t.Fatalf("entries %v, %v", ents, err)
	}
	priv := filepath.Join(parent, ents[0].Name())
	fi, err := os.Lstat(priv)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 || !fi.IsDir() || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Getuid() {
		t.Fatalf("private dir mode %v", fi.Mode())
	}
	socks := 0
	filepath.Walk(priv, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSocket != 0 {
			socks++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("socket %s mode %v, want 0600", p, fi.Mode().Perm())
			}
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is accessible to others: %v", p, fi.Mode().Perm())
		}
		return nil
	})
	if socks != 2 {
		t.Errorf("%d sockets, want 2", socks)
	}
}

// TestSupervisor_CloseLeavesNothing: after Close no worker process (nor any
// process-pool child) is alive and no socket or directory is left.
func TestSupervisor_CloseLeavesNothing(t *testing.T) {
	parent := shortDir(t)
	s, err := mlbridge.New(mlbridge.Config{Workers: 2, Dir: parent, ProcessesPerWorker: 1}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Make both workers start their process pools.
	for range 4 {
		if _, err := s.Infer(ctxTimeout(t, 20*time.Second), "heap-trend", []byte(`{"series":[[0,3],[1,2],[2,1]]}`)); err != nil {
			t.Fatal(err)
		}
	}
	var pids []int
	for _, st := range s.Status() {
		pids = append(pids, st.PID)
		pids = append(pids, children(st.PID)...)
	}
	if len(pids) < 3 {
		t.Fatalf("expected workers and pool processes, found %v", pids)
	}
	if err := s.Close(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("process %d still alive after Close", p)
		}
	}
	if n := countFiles(t, parent, ""); n != 0 {
		t.Errorf("%d entries left in Dir after Close", n)
	}
}

// TestSupervisor_ServerKilled: when the server process is SIGKILLed, its
// workers die with it, and the next start removes the stale directory.
func TestSupervisor_ServerKilled(t *testing.T) {
	parent := shortDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MLBRIDGE_HELPER_DIR="+parent)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if !testing.Verbose() {
		cmd.Stderr = nil
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			break
		}
		if p, ok := strings.CutPrefix(line, "pid "); ok {
			n, _ := strconv.Atoi(p)
			pids = append(pids, n)
		}
		if strings.HasPrefix(line, "error") {
			t.Fatal(line)
		}
	}
	if len(pids) != 2 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper reported pids %v", pids)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for _, p := range pids {
		eventually(t, "worker "+strconv.Itoa(p)+" to die with its server", func() bool { return !alive(p) })
	}
	stale, _ := os.ReadDir(parent)
	if len(stale) != 1 {
		t.Fatalf("expected the killed run's directory, found %v", stale)
	}
	s := mustStart(t, mlbridge.Config{Workers: 1, Dir: parent})
	_ = s
	now, _ := os.ReadDir(parent)
	if len(now) != 1 || now[0].Name() == stale[0].Name() {
		t.Fatalf("stale directory %s not replaced: %v", stale[0].Name(), now)
	}
}

// TestSupervisor_LiveDirNotRemoved: a second supervisor sharing Dir leaves
// the first one's directory alone (its lock is held).
func TestSupervisor_LiveDirNotRemoved(t *testing.T) {
	parent := shortDir(t)
	a := mustStart(t, mlbridge.Config{Workers: 1, Dir: parent})
	mustStart(t, mlbridge.Config{Workers: 1, Dir: parent})
	if ents, _ := os.ReadDir(parent); len(ents) != 2 {
		t.Fatalf("entries %v, want both live directories", ents)
	}
	if _, err := a.Call(ctxTimeout(t, 10*time.Second), mlbridge.HealthCheckData, ""); err != nil {
		t.Fatalf("first supervisor broken by the second: %v", err)
	}
}

// TestSupervisor_StartCanceled: the caller's context bounds Start too.
func TestSupervisor_StartCanceled(t *testing.T) {
	dir := shortDir(t)
	cfg := hostile(t, "nobind")
	cfg.Dir, cfg.StartTimeout = dir, time.Minute
	s, err := mlbridge.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the worker process exists: Start is then waiting for
		// it. (Bounded: after 20 s cancel anyway and let the test fail.)
		for i := 0; i < 4000 && len(children(os.Getpid())) == 0; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	if err := s.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start: %v, want context.Canceled", err)
	}
	if n := countFiles(t, dir, ""); n != 0 {
		t.Errorf("canceled Start left %d entries", n)
	}
	if _, err := s.Call(context.Background(), "x", "m"); !errors.Is(err, mlbridge.ErrClosed) {
		t.Errorf("call after a failed Start: %v", err)
	}
}

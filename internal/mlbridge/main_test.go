package mlbridge_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("MLBRIDGE_HELPER_DIR"); dir != "" {
		os.Exit(helperServer(dir))
	}
	goleak.VerifyTestMain(m)
}

// helperServer is the body of a child test process standing in for the
// server: it starts a supervisor, prints the worker pids, and waits to be
// killed.
func helperServer(dir string) int {
	s, err := mlbridge.New(mlbridge.Config{Workers: 2, Dir: dir}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err == nil {
		err = s.Start(context.Background())
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	for _, st := range s.Status() {
		fmt.Printf("pid %d\n", st.PID)
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return 0
}

// Helpers --------------------------------------------------------------------

var python3 = func() string {
	p, err := exec.LookPath("python3")
	if err != nil {
		return ""
	}
	return p
}()

func testdata(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// shortDir returns a fresh short directory: socket paths must stay under 108
// bytes and t.TempDir() paths can be long.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mlt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// mustStart starts a supervisor with cfg (Dir defaulting to a fresh short
// directory) and closes it when the test ends.
func mustStart(t testing.TB, cfg mlbridge.Config) *mlbridge.Supervisor {
	t.Helper()
	if python3 == "" {
		t.Fatal("python3 not found on PATH: the ML bridge needs it")
	}
	if cfg.Dir == "" {
		cfg.Dir = shortDir(t)
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 2 * time.Second
	}
	s, err := mlbridge.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// sdkWithTestModels is a config for the built-in worker plus testmodels.py.
func sdkWithTestModels(t testing.TB) mlbridge.Config {
	return mlbridge.Config{Modules: []string{testdata(t, "testmodels.py")}}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes. It waits for
// a state, never asserts how long anything took.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

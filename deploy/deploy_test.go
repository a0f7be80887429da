package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/testenv"
)

// repo is the repository root.
var repo, _ = filepath.Abs("..")

// requireTool finds a command, failing in CI (where setup installs it) and
// skipping elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (scripts/setup.sh installs it): %v", name, err)
		}
		t.Skipf("%s not installed; run scripts/setup.sh", name)
	}
	return p
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds the static server and agent once for the package (the
// same flags as scripts/image.sh and make release, so their builds hit the
// cache).
func binaries(t *testing.T) (server, agent string) {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "unhidra-deploy-bin-")
		if binErr != nil {
			return
		}
		for name, pkg := range map[string]string{"unhidra": "./cmd/unhidra", "unhidra-agent": "./cmd/unhidra-agent"} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = repo
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "unhidra"), filepath.Join(binDir, "unhidra-agent")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestSystemdUnits: the units verify, and systemd's own assessment rates
// each one's exposure at 2.0 or less.
func TestSystemdUnits(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	server, agent := binaries(t)
	dir := t.TempDir()
	for _, unit := range []string{"unhidra.service", "unhidra@.service", "unhidra-agent.service"} {
		src, err := os.ReadFile(filepath.Join(repo, "deploy/systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		// verify wants the executables to exist: point at the fresh builds.
		text := strings.ReplaceAll(string(src), "/usr/local/bin/unhidra-agent", agent)
		text = strings.ReplaceAll(text, "/usr/local/bin/unhidra", server)
		for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "DynamicUser=yes"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
		if unit == "unhidra-agent.service" {
			if !regexp.MustCompile(`(?m)^RestartPreventExitStatus=.*\b3\b`).MatchString(text) {
				t.Errorf("%s: no RestartPreventExitStatus=3", unit)
			}
		} else if !strings.Contains(text, "Type=notify") || !strings.Contains(text, "WatchdogSec=") || !strings.Contains(text, "StateDirectory=") {
			t.Errorf("%s: not Type=notify with a watchdog and a state directory", unit)
		}
		path := filepath.Join(dir, unit)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if unit == "unhidra@.service" {
			inst := filepath.Join(dir, "unhidra@2.service")
			os.Symlink(path, inst)
			path = inst
		}
		if out := run(t, dir, nil, analyze, "verify", path); strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", unit, out)
		}
		out := run(t, dir, nil, analyze, "security", "--offline=yes", "--no-pager", path)
		m := exposureRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level for %s:\n%s", unit, out)
		}
		level, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s: exposure %.1f", unit, level)
		if level > 2.0 {
			t.Errorf("%s: exposure %.1f > 2.0:\n%s", unit, level, out)
		}
	}
}

// TestHAProxyConfig: haproxy -c accepts the cluster's balancer config with
// the addresses compose.yaml gives it.
func TestHAProxyConfig(t *testing.T) {
	haproxy := requireTool(t, "haproxy")
	env := []string{"UNHIDRA_LB_BIND=:8080", "UNHIDRA_LB_STATS=127.0.0.1:8404",
		"UNHIDRA_NODE1=node1:8080", "UNHIDRA_NODE2=node2:8080", "UNHIDRA_NODE3=node3:8080"}
	out := run(t, filepath.Join(repo, "deploy/cluster"), env, haproxy, "-c", "-f", "haproxy.cfg")
	if !strings.Contains(out, "Configuration file is valid") {
		t.Fatalf("haproxy -c:\n%s", out)
	}
	cfg, _ := os.ReadFile(filepath.Join(repo, "deploy/cluster/haproxy.cfg"))
	for _, want := range []string{"option httpchk GET /readyz", "timeout tunnel", "balance leastconn"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	compose, _ := os.ReadFile(filepath.Join(repo, "deploy/cluster/compose.yaml"))
	for _, want := range []string{"node1:", "node2:", "node3:", "postgres:", "nats:", "haproxy:", "--pass", "UNHIDRA_BUS_PASSWORD"} {
		if !strings.Contains(string(compose), want) {
			t.Errorf("compose.yaml lacks %q", want)
		}
	}
}

// TestPrometheusRules: promtool checks the rules and runs their unit tests.
func TestPrometheusRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	dir := filepath.Join(repo, "deploy/prometheus")
	out := run(t, dir, nil, promtool, "check", "rules", "unhidra.rules.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
	out = run(t, dir, nil, promtool, "test", "rules", "unhidra.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// startServer runs the static binary with the bus and ML on, so that every
// family of metrics exists, and returns its base URL.
func startServer(t *testing.T, bin string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data") // created 0700 by the server
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--no-tls", "--log-level", "warn"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	cmd.Env = append(os.Environ(), "UNHIDRA_ADMIN_PASSWORD=correct horse battery")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				urls <- u
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() { cancel(); <-exited })
	select {
	case u := <-urls:
		return u
	case <-exited:
		t.Fatalf("server exited:\n%s", stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start:\n%s", stderr.String())
	}
	return ""
}

// metricRE finds metric names in PromQL: identifiers of our families.
var metricRE = regexp.MustCompile(`\b((?:unhidra|process|go)_[a-z0-9_]+)\b`)

// TestMetricsOfDashboardAndRulesExist: every metric the Grafana dashboard
// and the Prometheus rules query is exported by a running server.
func TestMetricsOfDashboardAndRulesExist(t *testing.T) {
	bin, _ := binaries(t)
	url := startServer(t, bin, "--bus", testenv.NATSURL(t), "--bus-prefix", testenv.UniqueName("deploy"), "--ml-workers", "1")
	// A refused handshake, so the refusal family has a series.
	if res, err := http.Get(url + "/ws"); err == nil {
		res.Body.Close()
	}
	var exported map[string]bool
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		exported = map[string]bool{}
		for _, line := range strings.Split(string(body), "\n") {
			if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				exported[f[2]] = true
				if f[3] == "histogram" || f[3] == "summary" {
					for _, s := range []string{"_bucket", "_sum", "_count"} {
						exported[f[2]+s] = true
					}
				}
			}
		}
		if exported["unhidra_ml_workers_ready"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err := os.ReadFile(filepath.Join(repo, "deploy/grafana/unhidra.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	used := map[string][]string{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			for _, m := range metricRE.FindAllString(q.Expr, -1) {
				used[m] = append(used[m], "dashboard panel "+p.Title)
			}
		}
	}
	rules, err := os.ReadFile(filepath.Join(repo, "deploy/prometheus/unhidra.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			for _, m := range metricRE.FindAllString(e, -1) {
				used[m] = append(used[m], "rules")
			}
		}
	}
	if len(used) < 20 {
		t.Fatalf("only %d metrics found in the dashboard and rules: the scan is broken", len(used))
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !exported[n] {
			t.Errorf("%s (used by %s) is not exported by the server", n, strings.Join(used[n], ", "))
		}
	}
}

package main

import (
	"github.com/unhidra/unhidra/internal/cliconf"

	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a goroutine-safe output sink for the program under test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func envFrom(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// runCLI runs the program to completion.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	err = run(context.Background(), append([]string{"unhidra"}, args...), envFrom(env), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// server is a running `unhidra serve` in this process.
type server struct {
	url    string
	out    *syncBuffer
	client *http.Client
	stop   func() error
}

var listenRE = regexp.MustCompile(`listening on (https?://[0-9.:]+)`)

// startServer runs serve on a free port and waits until it listens.
func startServer(t *testing.T, dataDir string, env map[string]string, extra ...string) *server {
	t.Helper()
	// t.TempDir makes 0755 directories; the server refuses those.
	if err := os.Chmod(dataDir, 0o700); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{out: &syncBuffer{}}
	done := make(chan error, 1)
	args := []string{"unhidra", "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "warn"}
	if !strings.Contains(strings.Join(extra, " "), "--ml-") {
		args = append(args, "--ml-workers", "0") // Python workers only where a test wants them
	}
	if !strings.Contains(strings.Join(extra, " "), "--system-bot") {
		args = append(args, "--system-bot=false") // nor the bot's extra account and connection
	}
	args = append(args, extra...)
	go func() { done <- run(ctx, args, envFrom(env), strings.NewReader(""), s.out, io.Discard) }()
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("server did not stop")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { s.stop() })
	deadline := time.After(30 * time.Second)
	for {
		if m := listenRE.FindStringSubmatch(s.out.String()); m != nil {
			s.url = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s", err, s.out.String())
		case <-deadline:
			t.Fatalf("serve did not start:\n%s", s.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.client = &http.Client{Timeout: 30 * time.Second}
	if strings.HasPrefix(s.url, "https://") {
		// Trust exactly the certificate the server generated: real TLS
		// verification, no InsecureSkipVerify.
		pemBytes, err := os.ReadFile(filepath.Join(dataDir, "tls-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	return s
}

func (s *server) post(t *testing.T, path, token string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", s.url+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return s.do(t, req)
}

func (s *server) get(t *testing.T, path, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return s.do(t, req)
}

func (s *server) do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

var codeRE = regexp.MustCompile(`[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}`)

func TestServe_FirstRunBootstrapOverTLS(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, nil)
	if !strings.HasPrefix(s.url, "https://") {
		t.Fatalf("default is not TLS: %s", s.url)
	}
	if !strings.Contains(s.out.String(), "TLS certificate SHA-256 fingerprint:") {
		t.Fatal("fingerprint not printed")
	}
	code := codeRE.FindString(s.out.String())
	if code == "" {
		t.Fatalf("no bootstrap code printed:\n%s", s.out.String())
	}
	if st, body := s.get(t, "/api/v1/auth/bootstrap", ""); st != 200 || body["pending"] != true {
		t.Fatalf("bootstrap status: %d %v", st, body)
	}
	st, body := s.post(t, "/api/v1/auth/bootstrap", "", map[string]string{"code": code, "name": "root", "password": "correct horse battery"})
	if st != 201 || body["user"].(map[string]any)["role"] != "admin" {
		t.Fatalf("bootstrap: %d %v", st, body)
	}
	token := body["access_token"].(string)
	if st, _ := s.get(t, "/api/v1/admin/users", token); st != 200 {
		t.Fatalf("admin after bootstrap: %d", st)
	}
	// Files holding secrets are private.
	for _, f := range []string{"signing-keys.json", "tls-key.pem", "unhidra.db"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v mode %v", f, err, fi.Mode())
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	// A restart keeps the key: the old token still verifies, and no new
	// bootstrap code is printed.
	s2 := startServer(t, dir, nil)
	if codeRE.MatchString(s2.out.String()) {
		t.Fatal("bootstrap code printed although an administrator exists")
	}
	if st, _ := s2.get(t, "/api/v1/me", token); st != 200 {
		t.Fatalf("token after restart: %d", st)
	}
}

func TestServe_AdminFromEnvironmentAndCLI(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "from the environment", "UNHIDRA_ADMIN_NAME": "ops"}
	s := startServer(t, dir, env, "--no-tls")
	if !strings.HasPrefix(s.url, "http://") || codeRE.MatchString(s.out.String()) {
		t.Fatalf("--no-tls with env admin: %s\n%s", s.url, s.out.String())
	}
	if st, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "ops", "password": "from the environment"}); st != 200 {
		t.Fatalf("env admin login: %d %v", st, body)
	}
	// The admin CLI works beside the running server.
	out, _, err := runCLI(t, nil, "cli password 123\n", "admin", "--data-dir", dir, "user", "create", "zed", "--password-stdin")
	if err != nil || !strings.Contains(out, "created member zed") {
		t.Fatalf("admin user create: %v %q", err, out)
	}
	if st, _ := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "zed", "password": "cli password 123"}); st != 200 {
		t.Fatalf("CLI-created user cannot log in: %d", st)
	}
	out, _, err = runCLI(t, nil, "", "admin", "--data-dir", dir, "user", "list")
	if err != nil || !strings.Contains(out, "ops") || !strings.Contains(out, "zed") {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, nil, "x\n", "admin", "--data-dir", dir, "user", "create", "zed", "--password-stdin"); err == nil {
		t.Fatal("duplicate user created")
	}
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "user", "disable", "zed"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "zed", "password": "cli password 123"}); st != 401 { // like a wrong password
		t.Fatalf("disabled CLI user logs in: %d", st)
	}
	if _, _, err := runCLI(t, nil, "new cli password\n", "admin", "--data-dir", dir, "user", "reset-password", "ops", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "ops", "password": "new cli password"}); st != 200 {
		t.Fatalf("login after CLI reset: %d", st)
	}
}

func TestConfig_Precedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "unhidra.conf")
	os.WriteFile(file, []byte("# comment\nlisten = 127.0.0.1:1111\nlog-level = debug\naccess-ttl = \"20m\"\n"), 0o600)
	parse := func(env map[string]string, args ...string) (*serveConfig, error) {
		var cfg serveConfig
		fs := newFlagSet("serve", "serve", io.Discard)
		cfg.flags(fs)
		if err := parseFlags(fs, args, envFrom(env)); err != nil {
			return nil, err
		}
		return &cfg, cfg.validate()
	}
	cfg, err := parse(map[string]string{"UNHIDRA_LOG_LEVEL": "warn"}, "--config", file, "--access-ttl", "30m")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:1111" || cfg.logLevel != "warn" || cfg.accessTTL != 30*time.Minute {
		t.Fatalf("flag > env > file violated: listen=%s level=%s ttl=%v", cfg.listen, cfg.logLevel, cfg.accessTTL)
	}
	cfg, err = parse(map[string]string{"UNHIDRA_CONFIG": file})
	if err != nil || cfg.accessTTL != 20*time.Minute || cfg.logLevel != "debug" {
		t.Fatalf("config via UNHIDRA_CONFIG: %v %+v", err, cfg)
	}

	bad := []struct {
		env  map[string]string
		args []string
		file string
		want string
	}{
		{args: []string{"--access-ttl", "1s"}, want: "access-ttl"},
		{args: []string{"--listen", "nonsense"}, want: "--listen"},
		{args: []string{"--tls-cert", "x"}, want: "go together"},
		{args: []string{"--jwt-alg", "none"}, want: "jwt-alg"},
		{args: []string{"--store", "mysql://x"}, want: "--store"},
		{args: []string{"--trusted-proxies", "10.0.0.1/99"}, want: "CIDR"},
		{args: []string{"--registration", "maybe"}, want: "registration"},
		{env: map[string]string{"UNHIDRA_ACCESS_TTL": "soon"}, want: "UNHIDRA_ACCESS_TTL"},
		{file: "listne = 1\n", want: "unknown setting"},
		{file: "listen\n", want: "key = value"},
		{file: "listen = a\nlisten = b\n", want: "set twice"},
		{file: "config = other\n", want: "unknown setting"},
		{args: []string{"stray"}, want: "unexpected argument"},
	}
	for _, c := range bad {
		args := c.args
		if c.file != "" {
			f := filepath.Join(t.TempDir(), "c.conf")
			os.WriteFile(f, []byte(c.file), 0o600)
			args = append(args, "--config", f)
		}
		_, err := parse(c.env, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != 2 {
			t.Errorf("%v %v %q: err = %v, want usage error mentioning %q", c.args, c.env, c.file, err, c.want)
		}
	}
	big := filepath.Join(dir, "big.conf")
	os.WriteFile(big, bytes.Repeat([]byte("# x\n"), cliconf.MaxFileBytes), 0o600)
	if _, err := parse(nil, "--config", big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge config file: %v", err)
	}
}

func TestCLI_UsageAndVersion(t *testing.T) {
	out, _, err := runCLI(t, nil, "", "version")
	if err != nil || !strings.HasPrefix(out, "unhidra ") {
		t.Fatalf("version: %v %q", err, out)
	}
	for _, cmd := range [][]string{{"serve", "--help"}, {"admin", "--help"}, {"version", "--help"}, {"--help"}} {
		if _, _, err := runCLI(t, nil, "", cmd...); err != nil {
			t.Errorf("%v: %v", cmd, err)
		}
	}
	_, errOut, err := runCLI(t, nil, "", "serve", "--help")
	if !strings.Contains(errOut, "UNHIDRA_DATA_DIR") || err != nil {
		t.Errorf("serve --help does not name the environment variables: %q", errOut)
	}
	for _, cmd := range [][]string{{}, {"bogus"}, {"serve", "--bogus"}, {"admin", "--data-dir", t.TempDir(), "user"}, {"admin", "--data-dir", t.TempDir(), "frob", "x"}} {
		_, _, err := runCLI(t, nil, "", cmd...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v: err = %v, want usage error (exit 2)", cmd, err)
		}
	}
}

// TestRun_StrayArguments: commands that take no positional argument refuse
// one with a usage error (exit 2) before doing anything.
func TestRun_StrayArguments(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "stray"},
		{"bench", "fleet", "stray"},
		{"bench", "ml", "stray"},
		{"device", "check", "stray"},
	} {
		_, stderr, err := runCLI(t, nil, "", args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error()+stderr, `unexpected argument "stray"`) {
			t.Errorf("%v: err = %v, stderr %q; want a usage error about the argument", args, err, stderr)
		}
	}
}

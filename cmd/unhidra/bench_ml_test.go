package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBenchML_Unix measures round trips to a length-prefixed echo on a Unix
// socket and reports them as JSON.
func TestBenchML_Unix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "echo.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- 0
			return
		}
		defer c.Close()
		n := 0
		for {
			var h [4]byte
			if _, err := io.ReadFull(c, h[:]); err != nil {
				served <- n
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(h[:]))
			io.ReadFull(c, body)
			c.Write(append(h[:], body...))
			n++
		}
	}()
	// --cpu-pid of this very process (the echo runs in it): its CPU per
	// round trip is positive.
	stdout, stderr, err := runCLI(t, nil, "", "bench", "ml", "--unix", sock, "-n", "20", "--warmup", "3", "--interval", "1ms", "--json",
		"--cpu-pid", strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if res["mode"] != "unix" || res["n"] != 20.0 || !(res["p50_ms"].(float64) > 0) || res["p99_ms"].(float64) < res["p50_ms"].(float64) {
		t.Fatalf("result %v", res)
	}
	if cpu, ok := res["cpu_us_per_call"].([]any); !ok || len(cpu) != 1 || !(cpu[0].(float64) > 0) {
		t.Fatalf("cpu_us_per_call %v", res["cpu_us_per_call"])
	}
	ln.Close()
	if n := <-served; n != 23 {
		t.Errorf("echo served %d round trips, want 23 (3 warm-up + 20)", n)
	}
}

// TestBenchML_API calls the trivial benchmark model through the API of a
// real server with a real Python worker, as scripts/bench-ab.sh does.
func TestBenchML_API(t *testing.T) {
	model, _ := filepath.Abs("../../scripts/bench/ml_echo_model.py")
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	dir := t.TempDir()
	s := startServer(t, dir, env, "--ml-workers", "1", "--ml-modules", model)
	caFile := filepath.Join(dir, "tls-cert.pem")
	_, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	if st, body := s.get(t, "/api/v1/ml/models", body["access_token"].(string)); st != 200 || !strings.Contains(fmt.Sprint(body), "name:echo") {
		t.Fatalf("models: %d %v", st, body)
	}
	stdout, stderr, err := runCLI(t, map[string]string{"UNHIDRA_BENCH_PASSWORD": "correct horse battery"}, "",
		"bench", "ml", "--url", s.url, "--ca-file", caFile, "--user", "admin", "--model", "echo", "-n", "10", "--warmup", "2", "--interval", "0")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.HasPrefix(stdout, "api round trips=10 p50=") || !strings.Contains(stdout, "infer_p50=") {
		t.Fatalf("output %q", stdout)
	}
	// The minimal client, over TLS, one kept-alive connection (within the
	// user's burst of 20 calls).
	stdout, stderr, err = runCLI(t, map[string]string{"UNHIDRA_BENCH_PASSWORD": "correct horse battery"}, "",
		"bench", "ml", "--url", s.url, "--ca-file", caFile, "--user", "admin", "--model", "echo", "-n", "5", "--warmup", "1", "--interval", "0", "--http-client", "raw")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.HasPrefix(stdout, "api round trips=5 p50=") || !strings.Contains(stdout, "infer_p50=") {
		t.Fatalf("raw client output %q", stdout)
	}
	// An unknown model fails the run instead of measuring errors.
	_, _, err = runCLI(t, map[string]string{"UNHIDRA_BENCH_PASSWORD": "correct horse battery"}, "",
		"bench", "ml", "--url", s.url, "--ca-file", caFile, "--user", "admin", "--model", "nope", "-n", "1", "--warmup", "0")
	if err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("unknown model: %v", err)
	}
	for name, args := range map[string][]string{
		"bad n":     {"bench", "ml", "--unix", "/nonexistent", "-n", "0"},
		"extra arg": {"bench", "ml", "--unix", "/nonexistent", "x"},
		"bad pid":   {"bench", "ml", "--unix", "/nonexistent", "--cpu-pid", "1,x"},
		"pid zero":  {"bench", "ml", "--unix", "/nonexistent", "--cpu-pid", "0"},
		"client":    {"bench", "ml", "--unix", "/nonexistent", "--http-client", "curl"},
	} {
		if _, _, err := runCLI(t, nil, "", args...); err == nil || exitCode(err) != 2 {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

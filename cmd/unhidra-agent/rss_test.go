package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentRSS measures the resident memory of the stripped agent binary,
// waiting to reconnect (no server) and connected and idle. It runs when
// UNHIDRA_AGENT_RSS is set (docs/benchmarks.md records the figures).
func TestAgentRSS(t *testing.T) {
	if os.Getenv("UNHIDRA_AGENT_RSS") == "" {
		t.Skip("set UNHIDRA_AGENT_RSS=1 to measure the agent's memory")
	}
	bin := filepath.Join(t.TempDir(), "unhidra-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	measure := func(url, ca string, settle time.Duration, connected func()) int {
		cmd := exec.Command(bin, "--url", url, "--ca-file", ca)
		cmd.Env = []string{"UNHIDRA_DEVICE_KEY=" + testKey}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		if connected != nil {
			connected()
		}
		time.Sleep(settle)
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				return kb
			}
		}
		t.Fatal("no VmRSS")
		return 0
	}
	d := newDeviceServer(t)
	// A port nobody listens on: the agent fails, then waits in backoff.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "wss://" + l.Addr().String() + "/ws"
	l.Close()
	waiting := measure(closed, d.caFile, 3*time.Second, nil)
	conn := measure(d.url, d.caFile, 10*time.Second, func() { d.heartbeat(t) })
	fi, _ := os.Stat(bin)
	t.Logf("stripped amd64 binary %d bytes; VmRSS waiting to reconnect %d KiB, connected and idle %d KiB", fi.Size(), waiting, conn)
}

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/testenv"
)

// TestQEMU_Arm64 cross-builds the agent for linux/arm64 and runs it under
// qemu-aarch64-static against a local TLS server: it must connect with the
// key as its subprotocol and send heartbeats. The emulator is fetched by
// scripts/agent-qemu.sh; without it the test fails under CI and skips
// (with the reason) elsewhere.
func TestQEMU_Arm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and emulates an arm64 binary; skipped with -short")
	}
	qemu, bin := testenv.ARM64Agent(t)

	d := newDeviceServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, bin, "--url", d.url, "--ca-file", d.caFile, "--heartbeat-interval", "1s")
	cmd.Env = []string{"UNHIDRA_DEVICE_KEY=" + testKey}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-waited
	}()
	select {
	case p := <-d.protos:
		if p != testKey {
			t.Errorf("Sec-WebSocket-Protocol %q", p)
		}
	case err := <-waited:
		waited <- err
		t.Fatalf("emulated agent exited: %v\n%s", err, stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("emulated agent never connected\n%s", stderr.String())
	}
	first := d.heartbeat(t)
	second := d.heartbeat(t)
	if first["device_id"] != "dev_9" || second["ts"].(float64) < first["ts"].(float64) || second["free_heap"].(float64) <= 0 {
		t.Errorf("heartbeats %v, %v", first, second)
	}
	// SIGTERM reaches the guest; the agent says goodbye and exits 0.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-waited:
		waited <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("emulated agent ignored SIGTERM")
	}
	t.Logf("arm64 agent under %s: connected, 2 heartbeats, clean exit", filepath.Base(qemu))
}

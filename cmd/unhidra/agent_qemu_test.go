package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/testenv"
)

// TestAgentArm64UnderQEMU_AgainstServer cross-builds the slim agent for
// arm64, runs it under qemu-user against the real server, and checks that
// the device comes online with its heartbeat and answers a command.
func TestAgentArm64UnderQEMU_AgainstServer(t *testing.T) {
	qemu, bin := testenv.ARM64Agent(t)

	e := startDeviceServer(t)
	id, key := e.register(t, e.token, "pi-under-qemu")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, bin, "--url", e.wsURL(), "--ca-file", filepath.Join(e.dir, "tls-cert.pem"))
	cmd.Env = []string{"UNHIDRA_DEVICE_KEY=" + key, "PATH=/usr/bin:/bin"}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	d := e.waitDevice(t, e.token, id, func(d map[string]any) bool {
		heap, _ := d["free_heap"].(float64)
		return d["state"] == "online" && heap > 0
	})
	t.Logf("arm64 agent online: uptime %v s, free heap %v bytes", d["uptime"], d["free_heap"])
	st, res := e.post(t, "/api/v1/devices/"+id+"/commands", e.token, map[string]any{"command": "uptime"})
	if st != 201 {
		t.Fatalf("command: %d %v", st, res)
	}
	cmdID := res["command"].(map[string]any)["id"].(string)
	for deadline := time.Now().Add(60 * time.Second); ; {
		_, res := e.get(t, "/api/v1/devices/"+id+"/commands/"+cmdID, e.token)
		c, _ := res["command"].(map[string]any)
		if c["status"] == "acked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the emulated agent never acked: %v\n%s", c, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

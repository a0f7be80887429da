package main

import (
	"strings"
	"testing"
)

func TestAgentCommand_Usage(t *testing.T) {
	_, stderr, err := runCLI(t, map[string]string{"UNHIDRA_DEVICE_KEY": "unhidra_dk_a_secret"}, "", "agent", "--url", "ws://example.com/ws")
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "must be wss") {
		t.Fatalf("err %v (exit %d), stderr %s", err, exitCode(err), stderr)
	}
	if strings.Contains(err.Error()+stderr, "secret") {
		t.Errorf("key echoed")
	}
	if _, stderr, err := runCLI(t, nil, "", "agent", "--help"); err != nil || !strings.Contains(stderr, "UNHIDRA_DEVICE_KEY") {
		t.Errorf("help: %v %s", err, stderr)
	}
}

package agent_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/protocol"
)

// The agent mirrors the protocol's close-code rule instead of importing
// protocol; this keeps the two in step.
func TestTerminalMatchesProtocol(t *testing.T) {
	for code := 1000; code <= 5000; code++ {
		if agent.Terminal(code) == protocol.Reconnectable(code) {
			t.Errorf("code %d: agent terminal=%v, protocol reconnectable=%v", code, agent.Terminal(code), protocol.Reconnectable(code))
		}
	}
}

// The public package must stay free of server dependencies (SQLite does
// not even build for mipsle): only the standard library and the
// WebSocket library.
func TestAgentDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/unhidra/unhidra/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "github.com/unhidra/unhidra/agent":
		case strings.HasPrefix(p, "github.com/coder/websocket"):
		default:
			t.Errorf("agent depends on %s", p)
		}
	}
}

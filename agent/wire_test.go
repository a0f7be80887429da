package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The public package must stay free of server dependencies (SQLite does
// not even build for mipsle): only the standard library, the WebSocket
// library and the wire protocol package (itself standard-library only).
func TestAgentDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/unhidra/unhidra/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "github.com/unhidra/unhidra/agent", p == "github.com/unhidra/unhidra/protocol":
		case strings.HasPrefix(p, "github.com/coder/websocket"):
		default:
			t.Errorf("agent depends on %s", p)
		}
	}
}

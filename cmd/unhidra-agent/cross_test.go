package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrossCompile builds the slim agent for every edge target with
// CGO_ENABLED=0 (scripts/agent-cross.sh does the same and prints sizes).
func TestCrossCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("four cross-builds; skipped with -short")
	}
	dir := t.TempDir()
	for _, arch := range []string{"arm", "arm64", "mipsle", "riscv64"} {
		out := filepath.Join(dir, "unhidra-agent-"+arch)
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOARCH=%s: %v\n%s", arch, err, b)
			continue
		}
		if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
			t.Errorf("GOARCH=%s: no binary", arch)
		}
	}
}

// TestSlimDependencies keeps server packages out of the edge binary.
func TestSlimDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/unhidra/unhidra/cmd/unhidra-agent": true,
		"github.com/unhidra/unhidra/agent":             true,
		"github.com/unhidra/unhidra/internal/agentcli": true,
		"github.com/unhidra/unhidra/internal/cliconf":  true, // standard library only
		"github.com/unhidra/unhidra/protocol":          true, // the wire vocabulary, standard library only
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] && !strings.HasPrefix(p, "github.com/coder/websocket") {
			t.Errorf("unhidra-agent depends on %s", p)
		}
	}
}

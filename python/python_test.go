package python_test

import (
	"io/fs"
	"os"
	"os/exec"
	"testing"

	"github.com/unhidra/unhidra/python"
)

// TestPythonUnitTests runs the SDK's own unittest suite, so `go test ./...`
// covers the models' known answers too. python3 is a hard requirement of the
// ML sidecar: its absence fails the test rather than skipping it.
func TestPythonUnitTests(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not found on PATH: %v", err)
	}
	cmd := exec.Command(py, "-B", "-m", "unittest", "discover", "-s", "tests", "-t", ".")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python unit tests failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestFS(t *testing.T) {
	for _, name := range []string{"__init__.py", "__main__.py", "server.py", "heap.py", "anomaly.py", "summarize.py"} {
		if _, err := fs.Stat(python.FS(), python.PackageName+"/"+name); err != nil {
			t.Errorf("embedded SDK lacks %s: %v", name, err)
		}
	}
}

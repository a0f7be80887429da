package testenv

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// ARM64Agent returns the qemu-aarch64 user-mode emulator (fetched by
// scripts/agent-qemu.sh) and the slim agent cross-built for linux/arm64.
// Without the emulator it fails under CI (CI must run these tests) and
// skips elsewhere, saying why.
func ARM64Agent(tb testing.TB) (qemu, bin string) {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out, err := exec.Command(filepath.Join(root, "scripts", "agent-qemu.sh")).Output()
	if err != nil {
		msg := "cannot get qemu-aarch64-static via scripts/agent-qemu.sh: " + err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	qemu = strings.TrimSpace(string(out))

	bin = filepath.Join(tb.TempDir(), "unhidra-agent-arm64")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/unhidra-agent")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("cross-build: %v\n%s", err, b)
	}
	f, err := elf.Open(bin)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		tb.Fatalf("built for %v, not arm64", f.Machine)
	}
	return qemu, bin
}

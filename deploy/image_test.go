package deploy_test

import (
	"archive/tar"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/testenv"
)

// TestContainerImages builds both images with podman (scratch, no pull),
// checks their configuration, exports the server's file system and runs
// the binary found in it.
func TestContainerImages(t *testing.T) {
	podman := requireTool(t, "podman")
	binaries(t) // warms the build cache for image.sh's identical flags
	name := strings.ToLower(testenv.UniqueName("unhidra-test-"))
	version := "v0.0.0-test"
	revision := strings.TrimSpace(run(t, repo, nil, "git", "rev-parse", "HEAD"))
	out := run(t, repo, []string{"IMAGE=" + name, "VERSION=" + version, "OUT_DIR=" + t.TempDir()}, "scripts/image.sh", "all")
	server, agent := name+":"+version, name+"-agent:"+version
	if !strings.Contains(out, server) || !strings.Contains(out, agent) {
		t.Fatalf("image.sh printed %q", out)
	}
	t.Cleanup(func() {
		exec.Command(podman, "rmi", "-f", server, agent).Run()
		exec.Command(podman, "image", "prune", "-f").Run() // the untagged first stages
	})

	var cfgs []struct {
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]any
			Volumes      map[string]any
			Labels       map[string]string
			Env          []string
		}
		RootFS struct{ Layers []string }
	}
	raw := run(t, repo, nil, podman, "image", "inspect", server, agent)
	if err := json.Unmarshal([]byte(raw), &cfgs); err != nil || len(cfgs) != 2 {
		t.Fatalf("inspect: %v\n%s", err, raw)
	}
	for i, c := range cfgs {
		cfg := c.Config
		if cfg.User != "65532:65532" {
			t.Errorf("image %d runs as %q, want the non-root 65532:65532", i, cfg.User)
		}
		if cfg.Labels["org.opencontainers.image.version"] != version ||
			cfg.Labels["org.opencontainers.image.source"] != "https://github.com/unhidra/unhidra" ||
			cfg.Labels["org.opencontainers.image.revision"] != revision {
			t.Errorf("image %d labels: %v", i, cfg.Labels)
		}
	}
	s := cfgs[0].Config
	if strings.Join(s.Entrypoint, " ") != "/usr/local/bin/unhidra" || strings.Join(s.Cmd, " ") != "serve" {
		t.Errorf("server entrypoint %v cmd %v", s.Entrypoint, s.Cmd)
	}
	if _, ok := s.ExposedPorts["8443/tcp"]; !ok {
		t.Errorf("server exposes %v, want 8443/tcp", s.ExposedPorts)
	}
	if _, ok := s.Volumes["/data"]; !ok {
		t.Errorf("server volumes %v, want /data", s.Volumes)
	}
	if strings.Join(cfgs[1].Config.Entrypoint, " ") != "/usr/local/bin/unhidra-agent" {
		t.Errorf("agent entrypoint %v", cfgs[1].Config.Entrypoint)
	}

	// The file system, exported from a created (never started) container.
	id := strings.TrimSpace(run(t, repo, nil, podman, "create", server))
	t.Cleanup(func() { exec.Command(podman, "rm", "-f", id).Run() })
	export := exec.Command(podman, "export", id)
	pipe, _ := export.StdoutPipe()
	if err := export.Start(); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(pipe)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		files[strings.TrimSuffix(name, "/")] = h
		if h.Typeflag == tar.TypeReg && (name == "usr/local/bin/unhidra" || name == "etc/passwd") {
			dst := filepath.Join(root, filepath.Base(name))
			f, _ := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o700)
			io.Copy(f, tr)
			f.Close()
		}
	}
	if err := export.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"usr/local/bin/unhidra", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group", "data"} {
		if files[want] == nil {
			t.Errorf("image lacks /%s", want)
		}
	}
	if d := files["data"]; d != nil && (d.Uid != 65532 || d.Gid != 65532) {
		t.Errorf("/data owned by %d:%d, want 65532:65532", d.Uid, d.Gid)
	}
	for name := range files {
		if strings.HasPrefix(name, "bin/") || name == "bin/sh" || strings.HasPrefix(name, "usr/bin/") {
			t.Errorf("scratch image holds %s", name)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "passwd"))
	if !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("passwd has no user 65532: %q", passwd)
	}
	bin := filepath.Join(root, "unhidra")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the image's binary is dynamically linked")
		}
	}
	f.Close()
	got := run(t, root, nil, bin, "version")
	if !strings.Contains(got, "unhidra "+version) || !strings.Contains(got, "commit: "+revision) {
		t.Fatalf("the image's binary says:\n%s", got)
	}
}

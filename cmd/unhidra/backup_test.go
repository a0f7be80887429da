package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAdmin_BackupWhileServingAndRestore: a backup taken while messages are
// being written is a consistent copy with the signing keys, 0600; restoring
// it is refused beside a running server and over an existing database, and
// a server on the restored directory has the data and accepts a token
// signed before the backup.
func TestAdmin_BackupWhileServingAndRestore(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"})
	_, ann := register(t, s, "ann")
	st, ch := s.post(t, "/api/v1/channels", ann, map[string]any{"name": "ops"})
	if st != 201 {
		t.Fatalf("channel: %d %v", st, ch)
	}
	chID := ch["id"].(string)

	// Writers keep sending while the backup runs.
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if st, _ := s.post(t, "/api/v1/channels/"+chID+"/messages", ann, map[string]any{"body": fmt.Sprintf("m%d", i)}); st == 201 {
				sent.Add(1)
			}
		}
	}()
	for sent.Load() < 5 {
		time.Sleep(5 * time.Millisecond)
	}
	archive := filepath.Join(t.TempDir(), "backup.tar")
	out, errOut, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "backup", "--out", archive)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "signing-keys.json") {
		t.Fatalf("backup output: %q", out)
	}
	fi, err := os.Stat(archive)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v mode %v", err, fi.Mode())
	}
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "backup", "--out", archive); err == nil {
		t.Fatal("backup overwrote an existing file")
	}

	// Not beside the running server, even with --force.
	_, _, err = runCLI(t, nil, "", "admin", "--data-dir", dir, "restore", "--from", archive, "--force")
	if err == nil || !strings.Contains(err.Error(), "server is running") {
		t.Fatalf("restore over a live data directory: %v", err)
	}

	// Into a new directory: a server there has the data and the keys.
	restored := filepath.Join(t.TempDir(), "restored") // created 0700 by restore
	if out, errOut, err := runCLI(t, nil, "", "admin", "--data-dir", restored, "restore", "--from", archive); err != nil {
		t.Fatalf("restore: %v\n%s%s", err, out, errOut)
	}
	for _, f := range []string{"unhidra.db", "signing-keys.json", "tls-key.pem"} {
		fi, err := os.Stat(filepath.Join(restored, f))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("restored %s: %v %v", f, err, fi.Mode())
		}
	}
	s.stop()
	s2 := startServer(t, restored, nil)
	if st, body := s2.get(t, "/api/v1/me", ann); st != 200 {
		t.Fatalf("token signed before the backup: %d %v", st, body)
	}
	st, page := s2.get(t, "/api/v1/channels/"+chID+"/messages?limit=500", ann)
	msgs, _ := page["messages"].([]any)
	if st != 200 || len(msgs) < 5 {
		t.Fatalf("restored messages: %d, %d of at least 5", st, len(msgs))
	}
	// Sequence numbers are gap-free: the copy is one transaction's view.
	for i, m := range msgs {
		if i > 0 && m.(map[string]any)["seq"].(float64) != msgs[i-1].(map[string]any)["seq"].(float64)+1 {
			t.Fatalf("gap in restored sequence at %d: %v", i, msgs)
		}
	}
	s2.stop()

	// Over an existing (stopped) database only with --force.
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", restored, "restore", "--from", archive); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over an existing database: %v", err)
	}
	if _, _, err := runCLI(t, nil, "", "admin", "--data-dir", restored, "restore", "--from", archive, "--force"); err != nil {
		t.Fatalf("restore --force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(restored, "unhidra.db.before-restore")); err != nil {
		t.Fatalf("old database not kept: %v", err)
	}
}

// TestAdmin_RestoreRefusesHostileArchives: unknown members, paths, links,
// oversized or missing parts and a corrupt database change nothing.
func TestAdmin_RestoreRefusesHostileArchives(t *testing.T) {
	manifest := []byte(`{"format":1,"version":"x"}`)
	keys := []byte(`{"keys":[]}`)
	type member struct {
		name string
		typ  byte
		body []byte
	}
	build := func(ms ...member) string {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, m := range ms {
			h := &tar.Header{Name: m.name, Mode: 0o600, Size: int64(len(m.body)), Typeflag: m.typ}
			if m.typ == tar.TypeSymlink {
				h.Size, h.Linkname = 0, "/etc/passwd"
			}
			tw.WriteHeader(h)
			tw.Write(m.body)
		}
		tw.Close()
		p := filepath.Join(t.TempDir(), "a.tar")
		os.WriteFile(p, b.Bytes(), 0o600)
		return p
	}
	reg := func(name string, body []byte) member { return member{name, tar.TypeReg, body} }
	cases := map[string]string{
		"path":      build(reg("manifest.json", manifest), reg("../../evil", []byte("x"))),
		"unknown":   build(reg("manifest.json", manifest), reg("authorized_keys", []byte("x"))),
		"symlink":   build(reg("manifest.json", manifest), member{"unhidra.db", tar.TypeSymlink, nil}),
		"no-keys":   build(reg("manifest.json", manifest), reg("unhidra.db", []byte("x"))),
		"corrupt":   build(reg("manifest.json", manifest), reg("unhidra.db", bytes.Repeat([]byte("x"), 4096)), reg("signing-keys.json", keys)),
		"order":     build(reg("unhidra.db", []byte("x")), reg("manifest.json", manifest)),
		"twice":     build(reg("manifest.json", manifest), reg("manifest.json", manifest)),
		"bad-json":  build(reg("manifest.json", []byte("{")), reg("unhidra.db", []byte("x"))),
		"big":       build(reg("manifest.json", bytes.Repeat([]byte(" "), 65<<10))),
		"not-a-tar": func() string { p := filepath.Join(t.TempDir(), "x"); os.WriteFile(p, []byte("hello"), 0o600); return p }(),
	}
	for name, archive := range cases {
		dir := t.TempDir()
		_, _, err := runCLI(t, nil, "", "admin", "--data-dir", dir, "restore", "--from", archive)
		if err == nil {
			t.Errorf("%s: restore accepted it", name)
			continue
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "unhidra.lock" {
				t.Errorf("%s: restore left %s behind (%v)", name, e.Name(), err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(t.TempDir()), "evil")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a path escaped the data directory")
	}
}

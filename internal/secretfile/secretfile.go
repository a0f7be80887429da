// Package secretfile writes files that hold secrets (signing keys, cluster
// keys): readable by the owner only, replaced atomically, on disk before
// the call returns.
package secretfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode 0600. It writes a temporary file in
// the same directory, syncs it and renames it over path, so a reader (or a
// crash) sees the old content or the new, never a part, and the secret is
// never readable by others, not even for a moment.
func Write(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

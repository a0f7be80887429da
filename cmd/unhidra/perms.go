package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/unhidra/unhidra/internal/bus"
)

// checkPermissions refuses to start when secrets could be read by other
// local users: the data directory must not be group/world accessible,
// and the SQLite database (with its WAL and shared-memory files), the TLS
// key, the signing and cluster keys must not be group/world readable.
// Files that do not exist yet are created private later.
func checkPermissions(cfg *serveConfig) error {
	var errs []error
	if fi, err := os.Stat(cfg.dataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		errs = append(errs, fmt.Errorf("data directory %s is accessible by group or others (mode %04o); fix: chmod 700 %s",
			cfg.dataDir, fi.Mode().Perm(), cfg.dataDir))
	}
	var files []string
	switch {
	case cfg.storeURL == "":
		db := filepath.Join(cfg.dataDir, "unhidra.db")
		files = append(files, db, db+"-wal", db+"-shm")
	case strings.HasPrefix(cfg.storeURL, "sqlite:"):
		db := strings.TrimPrefix(cfg.storeURL, "sqlite:")
		files = append(files, db, db+"-wal", db+"-shm")
	}
	key := cfg.tlsKey
	if key == "" && !cfg.noTLS {
		key = filepath.Join(cfg.dataDir, "tls-key.pem")
	}
	if key != "" {
		files = append(files, key)
	}
	files = append(files, filepath.Join(cfg.dataDir, "signing-keys.json"), filepath.Join(cfg.dataDir, bus.ClusterKeyFile))
	for _, f := range files {
		fi, err := os.Stat(f)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("check %s: %w", f, err))
		case fi.Mode().Perm()&0o077 != 0:
			errs = append(errs, fmt.Errorf("%s is readable by group or others (mode %04o); fix: chmod 600 %s", f, fi.Mode().Perm(), f))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("refusing to start: %w", errors.Join(errs...))
	}
	return nil
}

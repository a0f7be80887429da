package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/unhidra/unhidra/internal/backup"
)

// sqlitePath is the SQLite database file of the configuration, or a usage
// error for PostgreSQL, which is backed up with its own tools.
func (c *serveConfig) sqlitePath(cmd string) (string, error) {
	switch {
	case c.storeURL == "":
		return filepath.Join(c.dataDir, "unhidra.db"), nil
	case strings.HasPrefix(c.storeURL, "sqlite:"):
		return strings.TrimPrefix(c.storeURL, "sqlite:"), nil
	}
	return "", usagef("admin %s works on SQLite stores; back PostgreSQL up with pg_dump/pg_restore and copy signing-keys.json (docs/operations.md)", cmd)
}

// adminBackup: admin backup --out FILE.
func adminBackup(ctx context.Context, e env, cfg *serveConfig, args []string) error {
	fs := newFlagSet("admin backup", "admin [--data-dir DIR] backup --out FILE", e.stderr)
	out := fs.String("out", "", "archive to write (must not exist; created 0600)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return usagef("admin backup: --out FILE is required, and nothing else")
	}
	db, err := cfg.sqlitePath("backup")
	if err != nil {
		return err
	}
	m, err := backup.Create(ctx, db, cfg.dataDir, *out, buildVersion())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "backup written to %s: %s (database %d bytes)\n", *out, strings.Join(m.Files, ", "), m.DBBytes)
	return nil
}

// adminRestore: admin restore --from FILE [--force].
func adminRestore(ctx context.Context, e env, cfg *serveConfig, args []string) error {
	fs := newFlagSet("admin restore", "admin [--data-dir DIR] restore --from FILE [--force]", e.stderr)
	from := fs.String("from", "", "archive written by `admin backup`")
	force := fs.Bool("force", false, "replace an existing (stopped) database; the old one is kept as *.before-restore")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || fs.NArg() > 0 {
		return usagef("admin restore: --from FILE is required, and nothing else")
	}
	db, err := cfg.sqlitePath("restore")
	if err != nil {
		return err
	}
	m, err := backup.Restore(ctx, *from, cfg.dataDir, db, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored %s from the backup of %s (written by unhidra %s) into %s\n",
		strings.Join(m.Files, ", "), m.CreatedAt.Format("2006-01-02 15:04:05 UTC"), m.Version, cfg.dataDir)
	return nil
}

// Package backup copies a node's state into one archive and back: the
// SQLite database (a consistent online copy made with VACUUM INTO, so the
// server keeps serving), the JWT signing keys, the cluster keys and the TLS
// certificate the node generated. Archives are tar files created 0600; restoring refuses a
// data directory whose server is running (it holds the data-directory
// lock) and an existing database unless forced.
//
// PostgreSQL deployments back up with pg_dump/pg_restore instead (see
// docs/operations.md); the signing keys are copied by hand.
package backup

import (
	"archive/tar"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Archive member names. Nothing else is accepted on restore.
const (
	manifestName = "manifest.json"
	dbName       = "unhidra.db"
	keysName     = "signing-keys.json"
	certName     = "tls-cert.pem"
	keyName      = "tls-key.pem"
	clusterName  = "cluster-keys.json"
	lockName     = "unhidra.lock"
)

// Size limits of the members on restore.
var limits = map[string]int64{
	manifestName: 64 << 10,
	dbName:       1 << 40,
	keysName:     1 << 20,
	certName:     1 << 20,
	keyName:      1 << 20,
	clusterName:  1 << 20,
}

// Manifest describes an archive.
type Manifest struct {
	Format    int       `json:"format"`
	Version   string    `json:"version"` // of the binary that wrote it
	CreatedAt time.Time `json:"created_at"`
	Files     []string  `json:"files"`
	DBBytes   int64     `json:"db_bytes"`
}

const format = 1

// ErrLive is returned when a server is running on the data directory.
var ErrLive = errors.New("a server is running on this data directory (it holds " + lockName + "); stop it first")

// Lock takes a shared lock on the data directory's lock file for as long as
// a server runs; Restore needs it exclusively. Several servers (and admin
// commands) may share a directory; restores may not run beside them.
func Lock(dataDir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dataDir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open data-directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory %s (a restore is running?): %w", dataDir, err)
	}
	return func() { f.Close() }, nil
}

// Create writes an archive of the SQLite database at dbPath and of the key
// files in dataDir to out, which must not exist. It is safe while a server
// writes to the database: VACUUM INTO copies one read transaction.
func Create(ctx context.Context, dbPath, dataDir, out, version string) (*Manifest, error) {
	if _, err := os.Stat(dbPath); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	keys := filepath.Join(dataDir, keysName)
	if _, err := os.Stat(keys); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(out), ".unhidra-backup-")
	if err != nil {
		return nil, fmt.Errorf("backup scratch directory: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	snapshot := filepath.Join(tmpDir, dbName)
	if err := vacuumInto(ctx, dbPath, snapshot); err != nil {
		return nil, err
	}

	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(out)
		}
	}()
	m := &Manifest{Format: format, Version: version, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	files := []struct{ name, path string }{{dbName, snapshot}, {keysName, keys}}
	for _, opt := range []string{certName, keyName, clusterName} {
		if _, err := os.Stat(filepath.Join(dataDir, opt)); err == nil {
			files = append(files, struct{ name, path string }{opt, filepath.Join(dataDir, opt)})
		}
	}
	for _, fl := range files {
		m.Files = append(m.Files, fl.name)
	}
	if fi, err := os.Stat(snapshot); err == nil {
		m.DBBytes = fi.Size()
	}
	tw := tar.NewWriter(f)
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeMember(tw, manifestName, mb, m.CreatedAt); err != nil {
		return nil, err
	}
	for _, fl := range files {
		if err := copyMember(tw, fl.name, fl.path, m.CreatedAt); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close backup: %w", err)
	}
	ok = true
	return m, nil
}

func vacuumInto(ctx context.Context, dbPath, target string) error {
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", target); err != nil {
		return fmt.Errorf("copy database (VACUUM INTO): %w", err)
	}
	return nil
}

func writeMember(tw *tar.Writer, name string, body []byte, at time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), ModTime: at, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	_, err := tw.Write(body)
	return err
}

func copyMember(tw *tar.Writer, name, path string, at time.Time) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), ModTime: at, Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("backup %s: %w", name, err)
	}
	return nil
}

// Restore unpacks archive into dataDir, the database going to dbPath. It
// refuses while a server holds the data-directory lock, and refuses to
// replace an existing database unless force is set. Members are checked
// (known names, regular files, size limits, a manifest first, the database
// passing SQLite's integrity check) before anything in dataDir changes.
func Restore(ctx context.Context, archive, dataDir, dbPath string, force bool) (*Manifest, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dataDir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open data-directory lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, ErrLive
	}
	if _, err := os.Stat(dbPath); err == nil && !force {
		return nil, fmt.Errorf("%s exists: restore over it only with --force (a copy is kept as %s.before-restore)", dbPath, filepath.Base(dbPath))
	}

	in, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("open backup: %w", err)
	}
	defer in.Close()
	stage, err := os.MkdirTemp(dataDir, ".restore-")
	if err != nil {
		return nil, fmt.Errorf("restore scratch directory: %w", err)
	}
	defer os.RemoveAll(stage)

	var m *Manifest
	seen := map[string]bool{}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read backup: %w", err)
		}
		limit, known := limits[h.Name]
		switch {
		case !known:
			return nil, fmt.Errorf("backup holds an unexpected member %q", h.Name)
		case h.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("backup member %q is not a regular file", h.Name)
		case h.Size < 0 || h.Size > limit:
			return nil, fmt.Errorf("backup member %q is too large (%d bytes)", h.Name, h.Size)
		case seen[h.Name]:
			return nil, fmt.Errorf("backup member %q appears twice", h.Name)
		case m == nil && h.Name != manifestName:
			return nil, fmt.Errorf("backup does not start with %s", manifestName)
		}
		seen[h.Name] = true
		if h.Name == manifestName {
			body, err := io.ReadAll(io.LimitReader(tr, limit))
			if err != nil {
				return nil, fmt.Errorf("read manifest: %w", err)
			}
			m = new(Manifest)
			if err := json.Unmarshal(body, m); err != nil || m.Format != format {
				return nil, fmt.Errorf("not an unhidra backup (manifest format %d, %v)", m.Format, err)
			}
			continue
		}
		out, err := os.OpenFile(filepath.Join(stage, h.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(out, io.LimitReader(tr, limit))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil || n != h.Size {
			return nil, fmt.Errorf("unpack %s: %d of %d bytes: %v", h.Name, n, h.Size, err)
		}
	}
	if m == nil || !seen[dbName] || !seen[keysName] {
		return nil, errors.New("backup is incomplete: it needs a manifest, the database and the signing keys")
	}
	if err := integrityCheck(ctx, filepath.Join(stage, dbName)); err != nil {
		return nil, err
	}

	// Everything checked: move into place. The database goes last, after
	// any stale WAL of the database it replaces is gone.
	if _, err := os.Stat(dbPath); err == nil {
		if err := os.Rename(dbPath, dbPath+".before-restore"); err != nil {
			return nil, fmt.Errorf("keep the old database: %w", err)
		}
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(dbPath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %s: %w", suffix, err)
		}
	}
	for _, name := range []string{keysName, certName, keyName, clusterName} {
		if seen[name] {
			if err := os.Rename(filepath.Join(stage, name), filepath.Join(dataDir, name)); err != nil {
				return nil, fmt.Errorf("restore %s: %w", name, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return nil, err
	}
	if err := moveFile(filepath.Join(stage, dbName), dbPath); err != nil {
		return nil, fmt.Errorf("restore database: %w", err)
	}
	return m, nil
}

// moveFile renames, or copies when dst is on another file system.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func integrityCheck(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("backup database is not a SQLite database: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("backup database fails the integrity check: %s", res)
	}
	return nil
}

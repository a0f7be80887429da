package fleet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/unhidra/unhidra/agent"
)

// maxKeysFileBytes bounds the keys file (19,000 keys fit in ~2 MiB).
const maxKeysFileBytes = 16 << 20

// ReadKeys reads a keys file: one device key per line, blank lines and
// lines starting with '#' ignored. Like a key file, it must not be
// readable by everyone. Errors name the line, never the key.
func ReadKeys(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("keys file %s is readable by everyone (chmod 600 it)", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	if len(data) > maxKeysFileBytes {
		return nil, fmt.Errorf("keys file %s is larger than %d bytes", path, maxKeysFileBytes)
	}
	var keys []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 8192), agent.MaxKeyBytes+2)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := agent.ValidateKey(line); err != nil {
			return nil, fmt.Errorf("keys file %s:%d: %w", path, n, err)
		}
		if seen[line] {
			return nil, fmt.Errorf("keys file %s:%d: duplicate key", path, n)
		}
		seen[line] = true
		keys = append(keys, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, errors.New("keys file holds no key")
	}
	return keys, nil
}

package bus

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/unhidra/unhidra/internal/secretfile"
)

// ClusterKeyFile is the name of the cluster keys in the data directory.
const ClusterKeyFile = "cluster-keys.json"

// DefaultActivation is how long a new cluster key waits before it seals:
// the time to copy the file to every node and restart them. Until then
// nodes already open messages sealed with it.
const DefaultActivation = time.Hour

// ClusterKey is one key of the cluster keyring. Every node of a deployment
// holds the same keyring (file mode 0600).
type ClusterKey struct {
	ID        string    `json:"kid"`
	CreatedAt time.Time `json:"created_at"`
	// ActiveAt is when the key starts sealing; before it, it only opens.
	ActiveAt time.Time `json:"active_at"`
	Secret   []byte    `json:"secret"` // 32 bytes, AES-256-GCM
}

// ClusterKeys is the keyring: the newest key whose ActiveAt has passed
// seals; every key opens.
type ClusterKeys struct {
	Keys []*ClusterKey `json:"keys"` // oldest first
}

func newClusterKey(now, activeAt time.Time) (*ClusterKey, error) {
	k := &ClusterKey{CreatedAt: now.UTC().Truncate(time.Second), ActiveAt: activeAt.UTC().Truncate(time.Second), Secret: make([]byte, 32)}
	id := make([]byte, 6)
	if _, err := rand.Read(k.Secret); err != nil {
		return nil, fmt.Errorf("generate cluster key: %w", err)
	}
	rand.Read(id)
	k.ID = base64.RawURLEncoding.EncodeToString(id)
	return k, nil
}

// sealing returns the key that seals at now: the newest active one, or,
// if none is active yet, the oldest.
func (ks *ClusterKeys) sealing(now time.Time) *ClusterKey {
	for i := len(ks.Keys) - 1; i >= 0; i-- {
		if !ks.Keys[i].ActiveAt.After(now) {
			return ks.Keys[i]
		}
	}
	return ks.Keys[0]
}

// LoadClusterKeys reads the keyring at path. It refuses a file readable by
// group or others and malformed keys.
func LoadClusterKeys(path string) (*ClusterKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster keys: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("cluster keys %s are readable by others (mode %o): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	var ks ClusterKeys
	if err := json.Unmarshal(data, &ks); err != nil {
		return nil, fmt.Errorf("parse cluster keys %s: %w", path, err)
	}
	if len(ks.Keys) == 0 {
		return nil, fmt.Errorf("cluster keys %s: no keys", path)
	}
	for _, k := range ks.Keys {
		if len(k.Secret) != 32 || k.ID == "" || len(k.ID) > 255 {
			return nil, fmt.Errorf("cluster keys %s: key %q is malformed", path, k.ID)
		}
	}
	return &ks, nil
}

// LoadOrCreateClusterKeys reads the keyring at path, or creates one with a
// key active at once (mode 0600) when there is none. created reports the
// latter: the operator must copy the file to the other nodes.
func LoadOrCreateClusterKeys(path string, now time.Time) (ks *ClusterKeys, created bool, err error) {
	ks, err = LoadClusterKeys(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return ks, false, err
	}
	k, err := newClusterKey(now, now)
	if err != nil {
		return nil, false, err
	}
	ks = &ClusterKeys{Keys: []*ClusterKey{k}}
	return ks, true, ks.Save(path)
}

// AddClusterKey appends a fresh key to the keyring at path (created if
// missing) that starts sealing at now+activation, and drops keys
// superseded for longer than keep. It returns the new key.
func AddClusterKey(path string, now time.Time, activation, keep time.Duration) (*ClusterKey, error) {
	ks, err := LoadClusterKeys(path)
	if errors.Is(err, os.ErrNotExist) {
		ks, err = &ClusterKeys{}, nil
	}
	if err != nil {
		return nil, err
	}
	k, err := newClusterKey(now, now.Add(activation))
	if err != nil {
		return nil, err
	}
	// Prune: a key is superseded once a newer key is active.
	var kept []*ClusterKey
	for i, old := range ks.Keys {
		superseded := false
		for _, newer := range ks.Keys[i+1:] {
			if now.Sub(newer.ActiveAt) > keep {
				superseded = true
			}
		}
		if !superseded {
			kept = append(kept, old)
		}
	}
	ks.Keys = append(kept, k)
	return k, ks.Save(path)
}

// Save writes the keyring atomically with mode 0600.
func (ks *ClusterKeys) Save(path string) error {
	data, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return err
	}
	if err := secretfile.Write(path, data); err != nil {
		return fmt.Errorf("save cluster keys: %w", err)
	}
	return nil
}

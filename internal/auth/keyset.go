package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/edverify"
	"github.com/unhidra/unhidra/internal/secretfile"
)

// Signing algorithms we issue. The verifier accepts only the algorithm of
// the key a token names, so HS256/EdDSA confusion and "none" are impossible.
const (
	AlgEdDSA = "EdDSA"
	AlgHS256 = "HS256"
)

// SigningKey is one key of the keyset. Private material never leaves the
// keyset file (0600) and memory.
type SigningKey struct {
	ID        string    `json:"kid"`
	Alg       string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is when a newer key took over; a retired key still verifies
	// tokens until they have all expired.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// Secret is the Ed25519 seed (32 bytes) or the HMAC key (32 bytes).
	Secret []byte `json:"secret"`

	// The expanded Ed25519 key, derived once: expanding the seed costs a
	// scalar multiplication, as much as a signature check.
	derive   sync.Once
	priv     ed25519.PrivateKey
	verifier *edverify.Key // this key's signature check, with its tables

	// The JWT header segment Issue writes for this key (verifyFast).
	headerOnce sync.Once
	header     string
}

func (k *SigningKey) privateKey() ed25519.PrivateKey {
	k.derive.Do(k.expand)
	return k.priv
}

// verify checks an Ed25519 signature by k.
func (k *SigningKey) verify(message, sig []byte) bool {
	k.derive.Do(k.expand)
	return k.verifier.Verify(message, sig)
}

func (k *SigningKey) expand() {
	k.priv = ed25519.NewKeyFromSeed(k.Secret)
	// A 32-byte key never fails New.
	k.verifier, _ = edverify.New(k.priv.Public().(ed25519.PublicKey))
}

// KeySet holds the signing keys: the newest is active; retired ones verify
// until their last token expires. It is safe for concurrent use.
type KeySet struct {
	path string // where it is persisted; "" for in-memory sets (tests)

	mu   sync.RWMutex
	keys []*SigningKey // oldest first; the last one signs
}

func newSigningKey(alg string, now time.Time) (*SigningKey, error) {
	k := &SigningKey{Alg: alg, CreatedAt: now.UTC().Truncate(time.Second), Secret: make([]byte, 32)}
	if _, err := rand.Read(k.Secret); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	id := make([]byte, 9)
	rand.Read(id)
	k.ID = base64.RawURLEncoding.EncodeToString(id)
	return k, nil
}

// NewKeySet returns an in-memory keyset with one fresh key.
func NewKeySet(alg string, now time.Time) (*KeySet, error) {
	if alg != AlgEdDSA && alg != AlgHS256 {
		return nil, fmt.Errorf("unsupported signing algorithm %q (want %s or %s)", alg, AlgEdDSA, AlgHS256)
	}
	k, err := newSigningKey(alg, now)
	if err != nil {
		return nil, err
	}
	return &KeySet{keys: []*SigningKey{k}}, nil
}

type keysetFile struct {
	Keys []*SigningKey `json:"keys"`
}

// LoadOrCreateKeySet reads the keyset at path, or creates one with a fresh
// key of alg (mode 0600) if the file does not exist. An existing keyset
// whose active key uses another algorithm gets a new active key of alg
// (the old one retires and keeps verifying). created reports whether a key
// was generated.
func LoadOrCreateKeySet(path, alg string, now time.Time) (ks *KeySet, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		ks, err := NewKeySet(alg, now)
		if err != nil {
			return nil, false, err
		}
		ks.path = path
		return ks, true, ks.save()
	case err != nil:
		return nil, false, fmt.Errorf("read signing keys: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("signing keys %s are readable by others (mode %o): chmod 600 it", path, fi.Mode().Perm())
	}
	var f keysetFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, false, fmt.Errorf("parse signing keys %s: %w", path, err)
	}
	if len(f.Keys) == 0 {
		return nil, false, fmt.Errorf("signing keys %s: no keys", path)
	}
	for _, k := range f.Keys {
		if (k.Alg != AlgEdDSA && k.Alg != AlgHS256) || len(k.Secret) != 32 || k.ID == "" {
			return nil, false, fmt.Errorf("signing keys %s: key %q is malformed", path, k.ID)
		}
	}
	ks = &KeySet{path: path, keys: f.Keys}
	if ks.Active().Alg != alg {
		if err := ks.Rotate(alg, now); err != nil {
			return nil, false, err
		}
		return ks, true, nil
	}
	return ks, false, nil
}

// save writes the keyset atomically with mode 0600.
func (ks *KeySet) save() error {
	if ks.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(keysetFile{Keys: ks.keys}, "", "  ")
	if err != nil {
		return err
	}
	if err := secretfile.Write(ks.path, data); err != nil {
		return fmt.Errorf("save signing keys: %w", err)
	}
	return nil
}

// Active returns the key that signs new tokens.
func (ks *KeySet) Active() *SigningKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys[len(ks.keys)-1]
}

// Key returns the key with that ID, or nil.
func (ks *KeySet) Key(kid string) *SigningKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.ID == kid {
			return k
		}
	}
	return nil
}

// Keys returns a snapshot of all keys, oldest first.
func (ks *KeySet) Keys() []*SigningKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return append([]*SigningKey(nil), ks.keys...)
}

// Rotate makes a fresh key of alg active, retiring the current one, and
// persists the set.
func (ks *KeySet) Rotate(alg string, now time.Time) error {
	k, err := newSigningKey(alg, now)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.keys[len(ks.keys)-1].RetiredAt = now.UTC().Truncate(time.Second)
	ks.keys = append(ks.keys, k)
	return ks.save()
}

// Prune drops retired keys whose tokens have all expired (retired before
// now - maxTokenAge) and persists the set if anything changed.
func (ks *KeySet) Prune(now time.Time, maxTokenAge time.Duration) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	kept := ks.keys[:0:0]
	for _, k := range ks.keys {
		if !k.RetiredAt.IsZero() && now.Sub(k.RetiredAt) > maxTokenAge {
			continue
		}
		kept = append(kept, k)
	}
	if len(kept) == len(ks.keys) {
		return nil
	}
	ks.keys = kept
	return ks.save()
}

// JWKS returns the public keys as a JSON Web Key Set (RFC 7517 / RFC 8037).
// HMAC keys are secret and never published.
func (ks *KeySet) JWKS() []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	out := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range ks.Keys() {
		if k.Alg != AlgEdDSA {
			continue
		}
		pub := k.privateKey().Public().(ed25519.PublicKey)
		out.Keys = append(out.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
			Kid: k.ID, Alg: AlgEdDSA, Use: "sig"})
	}
	data, _ := json.Marshal(out)
	return data
}

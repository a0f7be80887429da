package device

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// KeyPrefix starts every device API key.
const KeyPrefix = "unhidra_dk_"

// Key layout: KeyPrefix, 16 hex digits of lookup ID, "_", 64 hex digits of
// secret (256 bits). Hex keeps the key a valid subprotocol token (RFC 7230)
// and unambiguous to split.
const (
	keyIDLen     = 16
	keySecretLen = 64
	keyLen       = len(KeyPrefix) + keyIDLen + 1 + keySecretLen
)

// newKey returns a fresh key, its lookup ID and the digest to store.
func newKey() (key, keyID, digest string) {
	var b [8 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	keyID = hex.EncodeToString(b[:8])
	key = KeyPrefix + keyID + "_" + hex.EncodeToString(b[8:])
	return key, keyID, keyDigest(key)
}

// NewKey returns a fresh key in the registry's format, for a peer that
// needs one without registering a device (the `device check` probe).
func NewKey() string {
	key, _, _ := newKey()
	return key
}

// keyDigest is the stored form of a key. The secret has 256 random bits,
// so a plain SHA-256 cannot be brute-forced and needs no pepper (which
// the CLI, a separate process, would also have to share).
func keyDigest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// parseKey returns the lookup ID of a well-formed key.
func parseKey(key string) (keyID string, ok bool) {
	if len(key) != keyLen || !strings.HasPrefix(key, KeyPrefix) {
		return "", false
	}
	rest := key[len(KeyPrefix):]
	if rest[keyIDLen] != '_' || !isLowerHex(rest[:keyIDLen]) || !isLowerHex(rest[keyIDLen+1:]) {
		return "", false
	}
	return rest[:keyIDLen], true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// digestsEqual compares two hex digests in constant time.
func digestsEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

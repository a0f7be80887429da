package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are Argon2id cost parameters.
type PasswordParams struct {
	MemoryKiB uint32 // m: memory per hash in KiB; this much is allocated while hashing
	Time      uint32 // t: passes over the memory
	Threads   uint8  // p: lanes; x/crypto runs one goroutine per lane
	SaltLen   uint32 // bytes of random salt
	KeyLen    uint32 // bytes of hash output
}

// DefaultPasswordParams returns Unhidra's parameters: m=48 MiB, t=3, p=1,
// a 16-byte salt and a 32-byte hash. On the 2-core reference machines one hash
// takes about 85–170 ms and holds 48 MiB, which is why callers should hash
// through a PasswordHasher.
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{MemoryKiB: 48 * 1024, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Validate reports whether p lies within the bounds ParsePHC enforces, so that
// every hash made with p can be read back. The error wraps ErrPHCInvalid.
func (p PasswordParams) Validate() error {
	switch {
	case p.Threads < 1:
		return phcErrorf("p=%d out of range [1, %d]", p.Threads, phcMaxThreads)
	case p.Time < 1 || p.Time > phcMaxTime:
		return phcErrorf("t=%d out of range [1, %d]", p.Time, phcMaxTime)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > phcMaxMemoryKiB:
		// RFC 9106 requires m >= 8p; x/crypto would silently round it up.
		return phcErrorf("m=%d out of range [8·p=%d, %d]", p.MemoryKiB, 8*uint32(p.Threads), phcMaxMemoryKiB)
	case p.SaltLen < phcMinSaltLen || p.SaltLen > phcMaxSaltLen:
		return phcErrorf("salt length %d out of range [%d, %d]", p.SaltLen, phcMinSaltLen, phcMaxSaltLen)
	case p.KeyLen < phcMinKeyLen || p.KeyLen > phcMaxKeyLen:
		return phcErrorf("hash length %d out of range [%d, %d]", p.KeyLen, phcMinKeyLen, phcMaxKeyLen)
	}
	return nil
}

// HashPassword hashes pw with Argon2id, parameters p and a fresh random salt,
// and returns the PHC string. pw is normalised as in ValidatePassword (NFC,
// non-ASCII spaces to U+0020) but its policy is not checked: call
// ValidatePassword first when a user sets a password. A password that is not
// valid UTF-8 or is over 4096 bytes gives a *store.Error with code protocol.ErrInvalid;
// invalid parameters give an error wrapping ErrPHCInvalid.
//
// HashPassword runs the full cost of a hash (and allocates p.MemoryKiB) in the
// calling goroutine without any concurrency bound; servers should use
// PasswordHasher.Hash.
func HashPassword(pw string, p PasswordParams) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	normalised, err := normalizePassword(pw, passwordHardMaxBytes)
	if err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading salt: %w", err)
	}
	return hashWithSalt(argon2.IDKey, normalised, salt, p), nil
}

// VerifyPassword reports whether pw matches the PHC string phc. It reads
// the parameters from phc, so hashes made with older parameters (or by other
// Argon2id implementations) still verify, and it compares in constant time.
// pw is normalised as in ValidatePassword. A password that HashPassword would
// refuse (invalid UTF-8, over 4096 bytes) is reported as not matching without
// hashing: it can never have been set.
// A malformed phc gives an error wrapping ErrPHCInvalid.
//
// Like HashPassword it is unbounded; servers should use PasswordHasher.Verify.
func VerifyPassword(pw, phc string) (ok bool, err error) {
	parsed, err := ParsePHC(phc)
	if err != nil {
		return false, err
	}
	normalised, err := normalizePassword(pw, passwordHardMaxBytes)
	if err != nil {
		return false, nil
	}
	return verifyParsed(argon2.IDKey, normalised, parsed), nil
}

// NeedsRehash reports whether the hash phc should be replaced by one made
// with the parameters p: it was made with any different parameter (stronger
// or weaker, so lowering the cost also takes effect), or it does not parse.
// Call it after a successful verification, when the plain password is at hand.
func NeedsRehash(phc string, p PasswordParams) bool {
	parsed, err := ParsePHC(phc)
	return err != nil || parsed.Params != p
}

// deriveFunc has the signature of argon2.IDKey; tests substitute it to count
// or block hash computations.
type deriveFunc func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte

// hashWithSalt returns the PHC string of the already-normalised password pw
// under salt and p (whose SaltLen is taken from salt).
func hashWithSalt(derive deriveFunc, pw string, salt []byte, p PasswordParams) string {
	p.SaltLen = uint32(len(salt))
	key := derive([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return PHC{Params: p, Salt: salt, Hash: key}.String()
}

// verifyParsed reports whether the already-normalised pw matches phc.
func verifyParsed(derive deriveFunc, pw string, phc PHC) bool {
	p := phc.Params
	key := derive([]byte(pw), phc.Salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	// Constant time, so that response timing reveals nothing about how many
	// leading bytes of a guess's hash matched.
	return subtle.ConstantTimeCompare(key, phc.Hash) == 1
}

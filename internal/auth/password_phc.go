package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrPHCInvalid is wrapped by every error ParsePHC and PasswordParams.Validate
// return (malformed strings, parameters out of bounds). A stored hash that fails to parse is
// a server-side data fault, so these errors are deliberately not
// *store.Error: they read as protocol.ErrInternal and their detail only reaches the log.
var ErrPHCInvalid = errors.New("invalid argon2id PHC string")

// Bounds on Argon2id parameters, for hashes we produce and hashes we read
// back. The upper bounds exist so that a hostile or corrupted stored string
// cannot make one verification allocate gigabytes or spin for minutes; the
// lower bounds are those of RFC 9106 (and the reference implementation), so
// that everything we accept also verifies there.
const (
	phcMaxMemoryKiB = 1 << 20 // 1 GiB
	phcMaxTime      = 100
	phcMaxThreads   = 255 // x/crypto/argon2 takes threads as uint8
	phcMinSaltLen   = 8
	phcMaxSaltLen   = 64
	phcMinKeyLen    = 16
	phcMaxKeyLen    = 128

	// phcMaxLen bounds the input before any other work: the longest valid
	// string is ~330 bytes (10-digit m, 64-byte salt, 128-byte hash).
	phcMaxLen = 512

	phcPrefix = "$argon2id$v=19$"
)

// phcB64 is the PHC string format's Base64: standard alphabet, no padding.
// Strict rejects non-zero trailing bits, so every accepted value has exactly
// one encoding and an accepted string re-encodes to itself.
var phcB64 = base64.RawStdEncoding.Strict()

// PHC is a parsed Argon2id version 19 (0x13) hash in the PHC string format:
//
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
//
// Params.SaltLen and Params.KeyLen are the lengths of Salt and Hash.
type PHC struct {
	Params PasswordParams
	Salt   []byte
	Hash   []byte
}

// String returns the canonical PHC encoding of p. For every string s that
// ParsePHC accepts, ParsePHC(s).String() == s.
func (p PHC) String() string {
	var b strings.Builder
	b.Grow(len(phcPrefix) + 32 + phcB64.EncodedLen(len(p.Salt)) + phcB64.EncodedLen(len(p.Hash)))
	b.WriteString(phcPrefix)
	b.WriteString("m=")
	b.WriteString(strconv.FormatUint(uint64(p.Params.MemoryKiB), 10))
	b.WriteString(",t=")
	b.WriteString(strconv.FormatUint(uint64(p.Params.Time), 10))
	b.WriteString(",p=")
	b.WriteString(strconv.FormatUint(uint64(p.Params.Threads), 10))
	b.WriteByte('$')
	b.WriteString(phcB64.EncodeToString(p.Salt))
	b.WriteByte('$')
	b.WriteString(phcB64.EncodeToString(p.Hash))
	return b.String()
}

// ParsePHC parses an Argon2id PHC string strictly. It accepts exactly
//
//	$argon2id$v=19$m=M,t=T,p=P$SALT$HASH
//
// with decimal M, T, P written without sign or leading zeros, in that order
// and with no other parameters (no keyid or data), and SALT and HASH in
// unpadded standard Base64 with no whitespace and no non-canonical trailing
// bits. It enforces 8·P <= M <= 1 GiB (in KiB), 1 <= T <= 100, 1 <= P <= 255,
// a salt of 8 to 64 bytes and a hash of 16 to 128 bytes.
//
// Variants: only argon2id is accepted. argon2i and argon2d are rejected even
// for verification: Unhidra has never written them, there is no import path
// that needs them, and accepting them would let a stored string choose a
// weaker (argon2d: not side-channel resistant) or differently-tuned algorithm.
//
// Versions: only v=19 (Argon2 1.3, 0x13) is accepted. v=16 (Argon2 1.0) and
// the pre-1.3 form without a v= field are rejected: x/crypto/argon2
// implements only 1.3, 1.0 computes different hashes, and the reference
// implementation produces 1.3 by default.
//
// Every error wraps ErrPHCInvalid.
func ParsePHC(s string) (PHC, error) {
	if len(s) > phcMaxLen {
		return PHC{}, phcErrorf("longer than %d bytes", phcMaxLen)
	}
	// Name the variant or version in the error: the commonest real-world
	// failure is a hash from a system configured differently.
	fields := strings.Split(s, "$")
	if len(fields) != 6 || fields[0] != "" {
		return PHC{}, phcErrorf("want 5 '$'-separated fields, got %d", len(fields)-1)
	}
	if fields[1] != "argon2id" {
		return PHC{}, phcErrorf("unsupported variant %.20q (want argon2id)", fields[1])
	}
	if fields[2] != "v=19" {
		return PHC{}, phcErrorf("unsupported version field %.20q (want v=19)", fields[2])
	}

	var p PHC
	m, rest, err := phcParam(fields[3], "m", ',')
	if err != nil {
		return PHC{}, err
	}
	t, rest, err := phcParam(rest, "t", ',')
	if err != nil {
		return PHC{}, err
	}
	threads, rest, err := phcParam(rest, "p", 0)
	if err != nil {
		return PHC{}, err
	}
	if rest != "" {
		return PHC{}, phcErrorf("unexpected text after parameters")
	}
	p.Params.MemoryKiB, p.Params.Time = m, t
	if threads > phcMaxThreads {
		return PHC{}, phcErrorf("p=%d out of range [1, %d]", threads, phcMaxThreads)
	}
	p.Params.Threads = uint8(threads)

	if p.Salt, err = phcBase64(fields[4], "salt", phcMinSaltLen, phcMaxSaltLen); err != nil {
		return PHC{}, err
	}
	if p.Hash, err = phcBase64(fields[5], "hash", phcMinKeyLen, phcMaxKeyLen); err != nil {
		return PHC{}, err
	}
	p.Params.SaltLen = uint32(len(p.Salt))
	p.Params.KeyLen = uint32(len(p.Hash))
	if err := p.Params.Validate(); err != nil {
		return PHC{}, err
	}
	return p, nil
}

// phcParam parses "name=decimal" at the start of s, followed by sep (or by the
// end of s when sep is 0), and returns the value and the text after sep.
func phcParam(s, name string, sep byte) (v uint32, rest string, err error) {
	if !strings.HasPrefix(s, name+"=") {
		return 0, "", phcErrorf("want parameter %s= next", name)
	}
	s = s[len(name)+1:]
	end := len(s)
	if sep != 0 {
		end = strings.IndexByte(s, sep)
		if end < 0 {
			return 0, "", phcErrorf("missing %q after %s", sep, name)
		}
		rest = s[end+1:]
	}
	digits := s[:end]
	// Hand-rolled rather than strconv.ParseUint: that accepts "+", "0x" and
	// "_" forms in some modes and leading zeros always, none of which are
	// canonical PHC.
	if digits == "" || len(digits) > 10 || (len(digits) > 1 && digits[0] == '0') {
		return 0, "", phcErrorf("%s: not a canonical decimal", name)
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, "", phcErrorf("%s: not a canonical decimal", name)
		}
		n = n*10 + uint64(c-'0') // at most 10 digits: cannot overflow uint64
	}
	if n > 1<<32-1 {
		return 0, "", phcErrorf("%s: overflows uint32", name)
	}
	return uint32(n), rest, nil
}

// phcBase64 decodes one Base64 field whose decoded length must lie in
// [minLen, maxLen].
func phcBase64(s, name string, minLen, maxLen int) ([]byte, error) {
	// Check the length before decoding so that no hostile field is decoded,
	// and the alphabet by hand because encoding/base64 silently skips '\r'
	// and '\n'.
	n := len(s) * 6 / 8
	if n < minLen || n > maxLen {
		return nil, phcErrorf("%s length %d bytes out of range [%d, %d]", name, n, minLen, maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, phcErrorf("%s: byte %d is not in the Base64 alphabet", name, i)
		}
	}
	b, err := phcB64.DecodeString(s)
	if err != nil {
		return nil, phcErrorf("%s: %v", name, err)
	}
	return b, nil
}

func phcErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrPHCInvalid, fmt.Sprintf(format, args...))
}

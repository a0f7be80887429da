package unhidra

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// Prefixes of entity IDs. An ID says what it names ("usr_…", "dev_…"), which
// makes logs and API responses readable and mix-ups visible.
const (
	PrefixUser    = "usr"
	PrefixFamily  = "fam"
	PrefixSession = "ses"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// NewID returns prefix + "_" + 26 characters: a 48-bit millisecond
// timestamp and 80 random bits in lowercase Crockford base32, so IDs of one
// kind sort by creation time.
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	// 128 bits → 26 base32 digits (the top two bits of the first are zero).
	out := make([]byte, 0, len(prefix)+27)
	out = append(out, prefix...)
	out = append(out, '_')
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var digits [26]byte
	for i := 25; i >= 0; i-- {
		digits[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(append(out, digits[:]...))
}

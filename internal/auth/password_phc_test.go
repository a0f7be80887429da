package auth_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/auth"
)

// phcOf builds a PHC string from its parts, without validation, so tests
// can construct hostile input.
func phcOf(variant, version, params, salt, hash string) string {
	return "$" + variant + "$" + version + "$" + params + "$" + salt + "$" + hash
}

func phcB64Of(n int) string {
	return base64.RawStdEncoding.EncodeToString([]byte(strings.Repeat("x", n)))
}

func TestParsePHC(t *testing.T) {
	const (
		salt = "c29tZXNhbHQ" // "somesalt"
		hash = "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
		prm  = "m=65536,t=2,p=1"
	)

	t.Run("OK", func(t *testing.T) {
		p, err := auth.ParsePHC(argon2RefVector)
		if err != nil {
			t.Fatal(err)
		}
		want := auth.PasswordParams{MemoryKiB: 65536, Time: 2, Threads: 1, SaltLen: 8, KeyLen: 32}
		if p.Params != want {
			t.Fatalf("params %+v, want %+v", p.Params, want)
		}
		if string(p.Salt) != "somesalt" {
			t.Fatalf("salt %q", p.Salt)
		}
		if got := p.String(); got != argon2RefVector {
			t.Fatalf("String() = %q, want %q", got, argon2RefVector)
		}
	})

	t.Run("OKBounds", func(t *testing.T) {
		for _, s := range []string{
			phcOf("argon2id", "v=19", "m=8,t=1,p=1", phcB64Of(8), phcB64Of(16)),
			phcOf("argon2id", "v=19", "m=2040,t=100,p=255", phcB64Of(64), phcB64Of(128)),
			phcOf("argon2id", "v=19", "m=1048576,t=1,p=1", phcB64Of(16), phcB64Of(32)),
		} {
			p, err := auth.ParsePHC(s)
			if err != nil {
				t.Errorf("ParsePHC(%q): %v", s, err)
				continue
			}
			if p.String() != s {
				t.Errorf("%q re-encodes as %q", s, p.String())
			}
		}
	})

	for _, tc := range []struct{ name, s string }{
		{"Empty", ""},
		{"Dollar", "$"},
		{"NoLeadingDollar", strings.TrimPrefix(argon2RefVector, "$")},
		{"MissingHash", "$argon2id$v=19$" + prm + "$" + salt},
		{"EmptyHash", phcOf("argon2id", "v=19", prm, salt, "")},
		{"EmptySalt", phcOf("argon2id", "v=19", prm, "", hash)},
		{"MissingVersion", "$argon2id$" + prm + "$" + salt + "$" + hash},
		{"ExtraField", argon2RefVector + "$" + hash},
		{"TrailingDollar", argon2RefVector + "$"},
		{"LeadingSpace", " " + argon2RefVector},
		{"TrailingNewline", argon2RefVector + "\n"},
		{"TrailingNUL", argon2RefVector + "\x00"},
		{"Huge", argon2RefVector + strings.Repeat("A", 1<<20)},

		{"VariantArgon2i", phcOf("argon2i", "v=19", prm, salt, hash)},
		{"VariantArgon2d", phcOf("argon2d", "v=19", prm, salt, hash)},
		{"VariantUpper", phcOf("Argon2id", "v=19", prm, salt, hash)},
		{"VariantBcrypt", phcOf("2b", "v=19", prm, salt, hash)},
		{"VariantEmpty", phcOf("", "v=19", prm, salt, hash)},

		{"Version16", phcOf("argon2id", "v=16", prm, salt, hash)},
		{"Version20", phcOf("argon2id", "v=20", prm, salt, hash)},
		{"VersionLeadingZero", phcOf("argon2id", "v=019", prm, salt, hash)},
		{"VersionHex", phcOf("argon2id", "v=0x13", prm, salt, hash)},
		{"VersionSpace", phcOf("argon2id", "v= 19", prm, salt, hash)},

		{"ParamsEmpty", phcOf("argon2id", "v=19", "", salt, hash)},
		{"ParamsMissingP", phcOf("argon2id", "v=19", "m=65536,t=2", salt, hash)},
		{"ParamsMissingM", phcOf("argon2id", "v=19", "t=2,p=1", salt, hash)},
		{"ParamsOrder", phcOf("argon2id", "v=19", "t=2,m=65536,p=1", salt, hash)},
		{"ParamsDuplicate", phcOf("argon2id", "v=19", "m=65536,m=65536,t=2,p=1", salt, hash)},
		{"ParamsKeyID", phcOf("argon2id", "v=19", prm+",keyid=abc", salt, hash)},
		{"ParamsData", phcOf("argon2id", "v=19", prm+",data=abc", salt, hash)},
		{"ParamsTrailingComma", phcOf("argon2id", "v=19", prm+",", salt, hash)},
		{"ParamsSpace", phcOf("argon2id", "v=19", "m=65536, t=2,p=1", salt, hash)},
		{"ParamsSemicolon", phcOf("argon2id", "v=19", "m=65536;t=2;p=1", salt, hash)},
		{"ParamsUpper", phcOf("argon2id", "v=19", "M=65536,T=2,P=1", salt, hash)},
		{"MEmpty", phcOf("argon2id", "v=19", "m=,t=2,p=1", salt, hash)},
		{"MNegative", phcOf("argon2id", "v=19", "m=-65536,t=2,p=1", salt, hash)},
		{"MPlus", phcOf("argon2id", "v=19", "m=+65536,t=2,p=1", salt, hash)},
		{"MLeadingZero", phcOf("argon2id", "v=19", "m=065536,t=2,p=1", salt, hash)},
		{"MHex", phcOf("argon2id", "v=19", "m=0x10000,t=2,p=1", salt, hash)},
		{"MUnderscore", phcOf("argon2id", "v=19", "m=65_536,t=2,p=1", salt, hash)},
		{"MExponent", phcOf("argon2id", "v=19", "m=6e4,t=2,p=1", salt, hash)},
		{"MFraction", phcOf("argon2id", "v=19", "m=65536.0,t=2,p=1", salt, hash)},
		{"MUnicodeDigit", phcOf("argon2id", "v=19", "m=６5536,t=2,p=1", salt, hash)},
		{"MOverflow32", phcOf("argon2id", "v=19", "m=4294967296,t=2,p=1", salt, hash)},
		{"MOverflow64", phcOf("argon2id", "v=19", "m=18446744073709551617,t=2,p=1", salt, hash)},
		{"MHuge", phcOf("argon2id", "v=19", "m=4294967295,t=2,p=1", salt, hash)},
		{"MOver1GiB", phcOf("argon2id", "v=19", "m=1048577,t=2,p=1", salt, hash)},
		{"MZero", phcOf("argon2id", "v=19", "m=0,t=2,p=1", salt, hash)},
		{"MBelow8", phcOf("argon2id", "v=19", "m=7,t=2,p=1", salt, hash)},
		{"MBelow8P", phcOf("argon2id", "v=19", "m=31,t=2,p=4", salt, hash)},
		{"TZero", phcOf("argon2id", "v=19", "m=65536,t=0,p=1", salt, hash)},
		{"TOver100", phcOf("argon2id", "v=19", "m=65536,t=101,p=1", salt, hash)},
		{"TMax32", phcOf("argon2id", "v=19", "m=65536,t=4294967295,p=1", salt, hash)},
		{"PZero", phcOf("argon2id", "v=19", "m=65536,t=2,p=0", salt, hash)},
		{"P256", phcOf("argon2id", "v=19", "m=65536,t=2,p=256", salt, hash)},
		{"PWraps8Bit", phcOf("argon2id", "v=19", "m=65536,t=2,p=257", salt, hash)},

		{"SaltPadded", phcOf("argon2id", "v=19", prm, salt+"=", hash)},
		{"SaltURLAlphabet", phcOf("argon2id", "v=19", prm, "c29tZXNhbHQ-_w", hash)},
		{"SaltBadChar", phcOf("argon2id", "v=19", prm, "c29t!XNhbHQ", hash)},
		{"SaltNewline", phcOf("argon2id", "v=19", prm, "c29tZX\nNhbHQ", hash)},
		{"SaltCR", phcOf("argon2id", "v=19", prm, "c29tZXNhbHQ\r", hash)},
		{"SaltSpace", phcOf("argon2id", "v=19", prm, "c29tZXNh bHQ", hash)},
		{"SaltTrailingBits", phcOf("argon2id", "v=19", prm, "c29tZXNhbHR", hash)},
		{"SaltImpossibleLength", phcOf("argon2id", "v=19", prm, "c29tZXNhbHQAB", hash)},
		{"SaltTooShort", phcOf("argon2id", "v=19", prm, phcB64Of(7), hash)},
		{"SaltTooLong", phcOf("argon2id", "v=19", prm, phcB64Of(65), hash)},
		{"SaltHugeField", phcOf("argon2id", "v=19", prm, phcB64Of(300), hash)},

		{"HashPadded", argon2RefVector + "="},
		{"HashTooShort", phcOf("argon2id", "v=19", prm, salt, phcB64Of(15))},
		{"HashTooLong", phcOf("argon2id", "v=19", prm, salt, phcB64Of(129))},
		{"HashTab", phcOf("argon2id", "v=19", prm, salt, "\t"+hash)},
		{"HashTrailingBits", phcOf("argon2id", "v=19", prm, salt, hash[:len(hash)-1]+"d")},
	} {
		t.Run("Err"+tc.name, func(t *testing.T) {
			p, err := auth.ParsePHC(tc.s)
			if !errors.Is(err, auth.ErrPHCInvalid) {
				t.Fatalf("ParsePHC(%.80q) = %+v, %v; want ErrPHCInvalid", tc.s, p, err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("error message is %d bytes long: hostile input echoed?", len(err.Error()))
			}
		})
	}
}

// FuzzParsePHC checks that ParsePHC never panics, that whatever it accepts is
// within bounds and is its own canonical encoding, and that any error wraps
// ErrPHCInvalid.
func FuzzParsePHC(f *testing.F) {
	for _, s := range []string{
		argon2RefVector,
		phcOf("argon2id", "v=19", "m=8,t=1,p=1", phcB64Of(8), phcB64Of(16)),
		phcOf("argon2id", "v=19", "m=2040,t=100,p=255", phcB64Of(64), phcB64Of(128)),
		phcOf("argon2i", "v=19", "m=65536,t=2,p=1", phcB64Of(16), phcB64Of(32)),
		phcOf("argon2id", "v=16", "m=65536,t=2,p=1", phcB64Of(16), phcB64Of(32)),
		phcOf("argon2id", "v=19", "m=4294967296,t=2,p=1", phcB64Of(16), phcB64Of(32)),
		phcOf("argon2id", "v=19", "m=65536,t=2,p=1,keyid=x", phcB64Of(16), phcB64Of(32)),
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ=$",
		"",
		"$$$$$",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := auth.ParsePHC(s)
		if err != nil {
			if !errors.Is(err, auth.ErrPHCInvalid) {
				t.Fatalf("error %v does not wrap ErrPHCInvalid", err)
			}
			return
		}
		if got := p.String(); got != s {
			t.Fatalf("accepted %q but re-encodes as %q", s, got)
		}
		q := p.Params
		switch {
		case q.MemoryKiB > 1<<20 || q.MemoryKiB < 8*uint32(q.Threads),
			q.Time < 1 || q.Time > 100,
			q.Threads < 1,
			q.SaltLen < 8 || q.SaltLen > 64 || int(q.SaltLen) != len(p.Salt),
			q.KeyLen < 16 || q.KeyLen > 128 || int(q.KeyLen) != len(p.Hash):
			t.Fatalf("accepted out-of-bounds %q: %+v", s, q)
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("accepted %q whose params fail Validate: %v", s, err)
		}
	})
}

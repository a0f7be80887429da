package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/protocol"
)

// pwTestParams keep unit tests fast; the algorithm is the same at any size.
var pwTestParams = auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// argon2RefVector is the Argon2id v1.3 test vector of the reference implementation
// (phc-winner-argon2 src/test.c: "password", "somesalt", t=2, m=2^16, p=1),
// reproduced by `echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -e`.
const argon2RefVector = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

func mustHashPassword(tb testing.TB, pw string, p auth.PasswordParams) string {
	tb.Helper()
	phc, err := auth.HashPassword(pw, p)
	if err != nil {
		tb.Fatalf("HashPassword(%q): %v", pw, err)
	}
	return phc
}

func mustVerifyPassword(tb testing.TB, pw, phc string) bool {
	tb.Helper()
	ok, err := auth.VerifyPassword(pw, phc)
	if err != nil {
		tb.Fatalf("VerifyPassword(%q, %q): %v", pw, phc, err)
	}
	return ok
}

func TestDefaultPasswordParams(t *testing.T) {
	got, want := auth.DefaultPasswordParams(),
		auth.PasswordParams{MemoryKiB: 49152, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}
	if got != want {
		t.Fatalf("DefaultPasswordParams() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestHashPassword(t *testing.T) {
	t.Run("DefaultParamsFormatAndRoundTrip", func(t *testing.T) {
		start := time.Now()
		phc := mustHashPassword(t, "correct horse battery staple", auth.DefaultPasswordParams())
		t.Logf("one hash at default params took %v", time.Since(start))
		if !strings.HasPrefix(phc, "$argon2id$v=19$m=49152,t=3,p=1$") {
			t.Fatalf("PHC %q lacks the expected prefix", phc)
		}
		parts := strings.Split(phc, "$")
		// 16-byte salt and 32-byte hash in unpadded Base64: 22 and 43 chars.
		if len(parts) != 6 || len(parts[4]) != 22 || len(parts[5]) != 43 {
			t.Fatalf("PHC %q: want 22-char salt and 43-char hash fields", phc)
		}
		if strings.ContainsRune(parts[4]+parts[5], '=') {
			t.Fatalf("PHC %q contains padding", phc)
		}
		parsed, err := auth.ParsePHC(phc)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := parsed.Params, auth.DefaultPasswordParams(); got != want {
			t.Fatalf("parsed params %+v, want %+v", got, want)
		}
		if got := parsed.String(); got != phc {
			t.Fatalf("re-encoded %q, want %q", got, phc)
		}
		if !mustVerifyPassword(t, "correct horse battery staple", phc) {
			t.Fatal("correct password did not verify")
		}
		if mustVerifyPassword(t, "correct horse battery stapler", phc) {
			t.Fatal("wrong password verified")
		}
	})

	t.Run("UniqueSalts", func(t *testing.T) {
		salts := map[string]bool{}
		hashes := map[string]bool{}
		for i := 0; i < 64; i++ {
			phc := mustHashPassword(t, "same password", pwTestParams)
			p, err := auth.ParsePHC(phc)
			if err != nil {
				t.Fatal(err)
			}
			if salts[string(p.Salt)] || hashes[string(p.Hash)] {
				t.Fatalf("hash %d repeats an earlier salt or hash: %s", i, phc)
			}
			salts[string(p.Salt)], hashes[string(p.Hash)] = true, true
			if !mustVerifyPassword(t, "same password", phc) {
				t.Fatalf("hash %d does not verify", i)
			}
		}
	})

	t.Run("ParamsHonoured", func(t *testing.T) {
		p := auth.PasswordParams{MemoryKiB: 100, Time: 2, Threads: 3, SaltLen: 9, KeyLen: 17}
		phc := mustHashPassword(t, "pw", p)
		parsed, err := auth.ParsePHC(phc)
		if err != nil {
			t.Fatal(err)
		}
		if parsed.Params != p {
			t.Fatalf("got %+v, want %+v", parsed.Params, p)
		}
		if !mustVerifyPassword(t, "pw", phc) {
			t.Fatal("did not verify")
		}
	})

	t.Run("ErrBadParams", func(t *testing.T) {
		for _, p := range []auth.PasswordParams{
			{},
			{MemoryKiB: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32},
			{MemoryKiB: 64, Time: 101, Threads: 1, SaltLen: 16, KeyLen: 32},
			{MemoryKiB: 64, Time: 1, Threads: 0, SaltLen: 16, KeyLen: 32},
			{MemoryKiB: 7, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
			{MemoryKiB: 31, Time: 1, Threads: 4, SaltLen: 16, KeyLen: 32},
			{MemoryKiB: 1<<20 + 1, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
			{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 7, KeyLen: 32},
			{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 65, KeyLen: 32},
			{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 15},
			{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 129},
		} {
			if _, err := auth.HashPassword("pw", p); !errors.Is(err, auth.ErrPHCInvalid) {
				t.Errorf("HashPassword with %+v: err = %v, want ErrPHCInvalid", p, err)
			}
		}
	})

	t.Run("ErrInvalidPassword", func(t *testing.T) {
		for name, pw := range map[string]string{
			"InvalidUTF8": "abc\xff\xfedefgh",
			"Huge":        strings.Repeat("a", 1<<20),
			"Over4096":    strings.Repeat("ü", 2049), // 4098 bytes
		} {
			_, err := auth.HashPassword(pw, pwTestParams)
			if got, want := unhidra.ErrorCode(err), protocol.ErrInvalid; got != want {
				t.Errorf("%s: code %q (%v), want %q", name, got, err, want)
			}
		}
	})
}

func TestVerifyPassword(t *testing.T) {
	t.Run("ReferenceVector", func(t *testing.T) {
		if !mustVerifyPassword(t, "password", argon2RefVector) {
			t.Fatal("reference vector does not verify")
		}
		if mustVerifyPassword(t, "Password", argon2RefVector) {
			t.Fatal("wrong password verified against the reference vector")
		}
	})

	t.Run("NFCEquivalence", func(t *testing.T) {
		// Each pair is the same text typed as precomposed and decomposed
		// code points (or, for the space, as macOS's Option+Space).
		for _, tc := range []struct{ name, a, b string }{
			{"é", "caf\u00e9 au lait", "cafe\u0301 au lait"},
			{"Å", "\u00c5ngstr\u00f6m", "A\u030angstro\u0308m"},
			{"Hangul", "\ud55c\uad6d\uc5b4 \ube44\ubc00\ubc88\ud638", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165 \u1107\u1175\u1106\u1175\u11af\u1107\u1165\u11ab\u1112\u1169"},
			{"NBSP", "two words here", "two\u00a0words\u2003here"},
		} {
			if tc.a == tc.b {
				t.Fatalf("%s: test strings are identical", tc.name)
			}
			phc := mustHashPassword(t, tc.a, pwTestParams)
			if !mustVerifyPassword(t, tc.b, phc) {
				t.Errorf("%s: decomposed form does not verify against precomposed hash", tc.name)
			}
			phc = mustHashPassword(t, tc.b, pwTestParams)
			if !mustVerifyPassword(t, tc.a, phc) {
				t.Errorf("%s: precomposed form does not verify against decomposed hash", tc.name)
			}
		}
		// Normalisation must not fold distinct passwords together.
		phc := mustHashPassword(t, "cafe au lait", pwTestParams)
		if mustVerifyPassword(t, "caf\u00e9 au lait", phc) {
			t.Error("accented and unaccented passwords match")
		}
		phc = mustHashPassword(t, "Password", pwTestParams)
		if mustVerifyPassword(t, "password", phc) {
			t.Error("case was folded")
		}
		phc = mustHashPassword(t, " password ", pwTestParams)
		if mustVerifyPassword(t, "password", phc) {
			t.Error("spaces were trimmed")
		}
	})

	t.Run("HostilePasswords", func(t *testing.T) {
		phc := mustHashPassword(t, "pass", pwTestParams)
		for name, pw := range map[string]string{
			"Empty":             "",
			"NULSuffix":         "pass\x00",
			"NULTruncated":      "pass\x00word", // a C-string bug would compare only "pass"
			"InvalidUTF8":       "pass\xff",
			"Huge":              strings.Repeat("pass", 1<<18), // 1 MiB
			"OverlongEncodingP": "\xc1\xb0ass",
		} {
			start := time.Now()
			if mustVerifyPassword(t, pw, phc) {
				t.Errorf("%s: verified", name)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: took %v", name, d)
			}
		}
		// NUL is an ordinary byte to the hash (policy rejects it at signup).
		phc = mustHashPassword(t, "pass\x00word", pwTestParams)
		if !mustVerifyPassword(t, "pass\x00word", phc) || mustVerifyPassword(t, "pass", phc) || mustVerifyPassword(t, "pass\x00wore", phc) {
			t.Error("NUL-containing password not compared in full")
		}
		phc = mustHashPassword(t, "", pwTestParams)
		if !mustVerifyPassword(t, "", phc) || mustVerifyPassword(t, "\x00", phc) {
			t.Error("empty password mishandled")
		}
		phc = mustHashPassword(t, "🔑 مرور 密码 पासवर्ड", pwTestParams)
		if !mustVerifyPassword(t, "🔑 مرور 密码 पासवर्ड", phc) {
			t.Error("Unicode password does not verify")
		}
	})

	t.Run("ErrMalformedPHC", func(t *testing.T) {
		for _, phc := range []string{"", "plaintext", argon2RefVector[:len(argon2RefVector)-1] + "$", "$2b$10$abcdefghijklmnopqrstuv"} {
			ok, err := auth.VerifyPassword("password", phc)
			if ok || !errors.Is(err, auth.ErrPHCInvalid) {
				t.Errorf("VerifyPassword(%q) = %v, %v; want false, ErrPHCInvalid", phc, ok, err)
			}
		}
	})

	t.Run("TamperedHashOrSalt", func(t *testing.T) {
		p, err := auth.ParsePHC(mustHashPassword(t, "password", pwTestParams))
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Hash {
			q := p
			q.Hash = append([]byte(nil), p.Hash...)
			q.Hash[i] ^= 0x80
			if mustVerifyPassword(t, "password", q.String()) {
				t.Fatalf("hash with byte %d flipped verified", i)
			}
		}
		q := p
		q.Salt = append([]byte(nil), p.Salt...)
		q.Salt[0] ^= 1
		if mustVerifyPassword(t, "password", q.String()) {
			t.Fatal("hash with altered salt verified")
		}
		q = p
		q.Params.Time = 2
		if mustVerifyPassword(t, "password", q.String()) {
			t.Fatal("hash with altered t verified")
		}
	})
}

func TestNeedsRehash(t *testing.T) {
	phc := mustHashPassword(t, "pw", pwTestParams)
	if auth.NeedsRehash(phc, pwTestParams) {
		t.Error("NeedsRehash with the same params = true")
	}
	for name, p := range map[string]auth.PasswordParams{
		"MoreMemory": {MemoryKiB: 128, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		"LessTime":   {MemoryKiB: 64, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32},
		"Threads":    {MemoryKiB: 64, Time: 1, Threads: 2, SaltLen: 16, KeyLen: 32},
		"SaltLen":    {MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 32, KeyLen: 32},
		"KeyLen":     {MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 64},
		"Default":    auth.DefaultPasswordParams(),
	} {
		if !auth.NeedsRehash(phc, p) {
			t.Errorf("%s: NeedsRehash = false", name)
		}
	}
	if !auth.NeedsRehash("garbage", pwTestParams) {
		t.Error("NeedsRehash(garbage) = false")
	}
}

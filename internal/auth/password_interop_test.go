package auth

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// These tests check interoperability with the reference C implementation of
// Argon2 through its command-line tool, Debian package "argon2". They fail
// (never skip) when it is missing.

func argon2CLI(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("argon2")
	if err != nil {
		tb.Fatalf("the reference Argon2 CLI `argon2` is not on PATH (%v); install the Debian package: apt-get install -y argon2", err)
	}
	return path
}

// argon2CLIHash runs `argon2 SALT -id -t T -k M -p P -l L -e` with pw on stdin and
// returns the encoded PHC string it prints. The CLI takes the salt as a
// command-line argument, so it cannot contain NUL.
func argon2CLIHash(tb testing.TB, pw, salt []byte, p PasswordParams, extra ...string) string {
	tb.Helper()
	args := append([]string{string(salt), "-id",
		"-t", strconv.FormatUint(uint64(p.Time), 10),
		"-k", strconv.FormatUint(uint64(p.MemoryKiB), 10),
		"-p", strconv.FormatUint(uint64(p.Threads), 10),
		"-l", strconv.FormatUint(uint64(p.KeyLen), 10),
		"-e"}, extra...)
	cmd := exec.Command(argon2CLI(tb), args...)
	cmd.Stdin = bytes.NewReader(pw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("argon2 %q: %v: %s", args[1:], err, stderr.Bytes())
	}
	return strings.TrimSuffix(string(out), "\n")
}

func TestPasswordInterop_ReferenceCLI(t *testing.T) {
	argon2CLI(t)
	for _, tc := range []struct {
		name     string
		pw, salt string
		p        PasswordParams
	}{
		// The brief's example: -m 16 is 2^16 KiB.
		{"BriefExample", "pw", "somesalt", PasswordParams{MemoryKiB: 1 << 16, Time: 3, Threads: 1, KeyLen: 32}},
		{"Defaults", "correct horse battery staple", "16-byte-salt-xyz", DefaultPasswordParams()},
		{"MemoryNotMultipleOfLanes", "pw", "somesalt", PasswordParams{MemoryKiB: 1003, Time: 2, Threads: 3, KeyLen: 16}},
		{"FourLanes", "pw", "somesalt", PasswordParams{MemoryKiB: 4096, Time: 1, Threads: 4, KeyLen: 32}},
		{"MinimumMemory", "pw", "somesalt", PasswordParams{MemoryKiB: 16, Time: 1, Threads: 2, KeyLen: 32}},
		{"LongKeyLongSalt", "pw", strings.Repeat("s", 64), PasswordParams{MemoryKiB: 256, Time: 4, Threads: 1, KeyLen: 128}},
		{"MinKey", "pw", "somesalt", PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 16}},
		{"Unicode", "pässwörd 密码 🔑 كلمة", "somesalt", PasswordParams{MemoryKiB: 256, Time: 2, Threads: 1, KeyLen: 32}},
		// (No empty password: the CLI refuses one with "no password read".)
		{"NULInPassword", "pa\x00ss", "somesalt", PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 32}},
		{"HighBitSalt", "pw", "\xff\xfe\x80salt\x01", PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.SaltLen = uint32(len(tc.salt))
			fromC := argon2CLIHash(t, []byte(tc.pw), []byte(tc.salt), p)

			// The C CLI's hash verifies with ours.
			ok, err := VerifyPassword(tc.pw, fromC)
			if err != nil || !ok {
				t.Fatalf("VerifyPassword(%q, %q) = %v, %v", tc.pw, fromC, ok, err)
			}
			if ok, _ := VerifyPassword(tc.pw+"x", fromC); ok {
				t.Fatal("wrong password verified against the CLI's hash")
			}
			// Ours is byte-identical to the CLI's for the same salt.
			if ours := hashWithSalt(argon2.IDKey, tc.pw, []byte(tc.salt), p); ours != fromC {
				t.Fatalf("ours differs from the CLI's:\n ours %s\n C    %s", ours, fromC)
			}
			parsed, err := ParsePHC(fromC)
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Params != p || parsed.String() != fromC {
				t.Fatalf("parsed %+v, re-encoded %q", parsed.Params, parsed.String())
			}
		})
	}

	t.Run("OursVerifiesInC", func(t *testing.T) {
		// A hash from HashPassword, with its random salt, is reproduced by
		// the CLI from the salt and parameters in the string.
		p := PasswordParams{MemoryKiB: 512, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
		for i := 0; i < 5; i++ {
			var phc string
			var parsed PHC
			for {
				var err error
				if phc, err = HashPassword("caf\u00e9 🔑", p); err != nil {
					t.Fatal(err)
				}
				if parsed, err = ParsePHC(phc); err != nil {
					t.Fatal(err)
				}
				if bytes.IndexByte(parsed.Salt, 0) < 0 {
					break // argv cannot carry NUL; ~6% of salts have one
				}
			}
			if fromC := argon2CLIHash(t, []byte("caf\u00e9 🔑"), parsed.Salt, p); fromC != phc {
				t.Fatalf("CLI does not reproduce our hash:\n ours %s\n C    %s", phc, fromC)
			}
		}
	})

	t.Run("NFDInputHashedAsNFC", func(t *testing.T) {
		// Normalisation happens before hashing: the CLI hashing the NFC
		// bytes matches ours for decomposed input.
		p := PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 32}
		fromC := argon2CLIHash(t, []byte("caf\u00e9"), []byte("somesalt"), p)
		if ok, err := VerifyPassword("cafe\u0301", fromC); !ok || err != nil {
			t.Fatalf("NFD input vs CLI hash of NFC bytes: %v, %v", ok, err)
		}
	})

	t.Run("RejectedVariantsAndVersions", func(t *testing.T) {
		// Documented in ParsePHC: only argon2id v=19 is accepted.
		p := PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 32}
		for _, tc := range []struct {
			prefix string
			extra  []string
		}{
			{"$argon2id$v=16$", []string{"-v", "10"}},
		} {
			fromC := argon2CLIHash(t, []byte("pw"), []byte("somesalt"), p, tc.extra...)
			if !strings.HasPrefix(fromC, tc.prefix) {
				t.Fatalf("CLI printed %q, want prefix %q", fromC, tc.prefix)
			}
			if _, err := VerifyPassword("pw", fromC); !errors.Is(err, ErrPHCInvalid) {
				t.Fatalf("VerifyPassword(%q): err = %v, want ErrPHCInvalid", fromC, err)
			}
		}
		for _, flag := range []string{"-i", "-d"} {
			cmd := exec.Command(argon2CLI(t), "somesalt", flag, "-t", "1", "-k", "64", "-e")
			cmd.Stdin = strings.NewReader("pw")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			fromC := strings.TrimSpace(string(out))
			if _, err := VerifyPassword("pw", fromC); !errors.Is(err, ErrPHCInvalid) {
				t.Fatalf("VerifyPassword(%q): err = %v, want ErrPHCInvalid", fromC, err)
			}
		}
	})
}

// TestPasswordInterop_RandomParams cross-checks ours against the CLI on
// random small parameters, salts and passwords.
func TestPasswordInterop_RandomParams(t *testing.T) {
	argon2CLI(t)
	for i := 0; i < 20; i++ {
		var r [8]byte
		rand.Read(r[:])
		threads := 1 + uint32(r[0]%8)
		p := PasswordParams{
			Threads:   uint8(threads),
			MemoryKiB: 8*threads + uint32(r[1])*4 + uint32(r[2]%4),
			Time:      1 + uint32(r[3]%4),
			KeyLen:    16 + uint32(r[4]%113),
			SaltLen:   8 + uint32(r[5]%57),
		}
		salt := make([]byte, p.SaltLen)
		rand.Read(salt)
		for j := range salt {
			if salt[j] == 0 {
				salt[j] = 1
			}
		}
		pwb := make([]byte, 1+r[6]%40) // the CLI refuses an empty password
		rand.Read(pwb)
		pw := strings.ToValidUTF8(string(pwb), "?")
		fromC := argon2CLIHash(t, []byte(pw), salt, p)
		if ours := hashWithSalt(argon2.IDKey, pw, salt, p); ours != fromC {
			t.Fatalf("params %+v, pw %q: ours %s, C %s", p, pw, ours, fromC)
		}
	}
}

package auth_test

import (
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/protocol"
)

func TestDefaultPasswordPolicy(t *testing.T) {
	got, want := auth.DefaultPasswordPolicy(), auth.PasswordPolicy{MinRunes: 8, MaxRunes: 256, MaxBytes: 1024, MinScore: 3}
	if got != want {
		t.Fatalf("DefaultPasswordPolicy() = %+v, want %+v", got, want)
	}
}

func TestValidatePassword(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for _, tc := range []struct{ name, pw, user, want string }{
			{"ASCII", "correct horse", "alice", "correct horse"},
			{"Exactly8", "8chars!x", "", "8chars!x"},
			{"Spaces kept", "  padded  ", "", "  padded  "},
			{"Emoji", "🔑🔑🔑🔑🔑🔑🔑🔑", "", "🔑🔑🔑🔑🔑🔑🔑🔑"},
			{"ZWJ emoji", "family 👨\u200d👩\u200d👧", "", "family 👨\u200d👩\u200d👧"},
			{"CJK", "我的密码很长很安全", "", "我的密码很长很安全"},
			{"Arabic RTL", "كلمة المرور السرية", "", "كلمة المرور السرية"},
			{"Hebrew with RLM", "סיסמה\u200fסודית", "", "סיסמה\u200fסודית"},
			{"Devanagari", "पासवर्ड सुरक्षित", "", "पासवर्ड सुरक्षित"},
			{"NFD to NFC", "cafe\u0301 au lait", "", "caf\u00e9 au lait"},
			{"Hangul jamo to syllables", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165", "", "\ud55c\uad6d\uc5b4\ud55c\uad6d\uc5b4\ud55c\uad6d\uc5b4"},
			{"NBSP to space", "two\u00a0words\u3000here", "", "two words here"},
			{"256 runes", strings.Repeat("é", 256), "", strings.Repeat("é", 256)},
			{"1024 bytes", strings.Repeat("🔑", 256), "", strings.Repeat("🔑", 256)},
			{"Short username ignored in part", "bobcat9x", "bo", "bobcat9x"},
		} {
			// Normalisation only: the strength estimator is off here (it
			// has its own cases below).
			got, err := auth.PasswordPolicy{MinScore: -1}.Validate(tc.pw, tc.user)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got != tc.want {
				t.Errorf("%s: normalised %+q, want %+q", tc.name, got, tc.want)
			}
		}
	})

	for _, tc := range []struct{ name, pw, user, msg string }{
		{"Empty", "", "", "at least 8 characters"},
		{"Short", "1234567", "", "at least 8 characters"},
		// Four decomposed "é" are 8 code points but 4 characters after NFC.
		{"ShortAfterNFC", "e\u0301e\u0301e\u0301e\u0301", "", "at least 8 characters"},
		{"TooManyRunes", strings.Repeat("a", 257), "", "at most 256 characters"},
		{"TooManyBytes", strings.Repeat("🔑", 257), "", "at most 1024 bytes"},
		{"Huge1MB", strings.Repeat("a", 1<<20), "", "at most 1024 bytes"},
		{"InvalidUTF8", "password\xff", "", "valid UTF-8"},
		{"Surrogate", "password\xed\xa0\x80", "", "valid UTF-8"},
		{"OverlongNUL", "password\xc0\x80", "", "valid UTF-8"},
		{"NUL", "pass\x00word", "", "control characters"},
		{"Tab", "pass\tword", "", "control characters"},
		{"Newline", "password\n", "", "control characters"},
		{"DEL", "pass\x7fword", "", "control characters"},
		{"C1", "pass\u0085word", "", "control characters"},
		{"Username", "alice123", "alice123", "contain your name"},
		{"UsernameCase", "ALICE1234", "alice1234", "contain your name"},
		{"UsernameNFD", "jose\u0301-maria lives by the sea", "jos\u00e9-mar\u00eda", ""}, // differs: "maria" vs "maría"
		{"UsernameNFDEqual", "jose\u0301mari\u0301a", "jos\u00e9mar\u00eda", "contain your name"},
		{"UsernamePlusDigits", "alice123", "Alice", "contain your name"},
		{"UsernameRepeated", "alicealice", "alice", "contain your name"},
		{"UsernameInPhrase", "alice-likes-long-walks", "alice", "contain your name"},
		// NIST SP 800-63B: no composition rules, but no common or easily
		// guessed passwords. The cases the security pass found first.
		{"Common password", "password", "", "commonly used passwords"},
		{"Common digits", "12345678", "", "commonly used passwords"},
		{"Common case-insensitive", "PassWord1", "", "commonly used passwords"},
		{"Repeated", "aaaaaaaa", "", "too easy to guess: repeated characters"},
		{"Keyboard", "qwertyuiop123", "", "commonly used passwords"},
		{"Keyboard walk", "zxcvbnm,./;lkj", "", "too easy to guess: a keyboard pattern"},
		{"Word and year", "iloveyou2024", "", "too easy to guess"},
		{"Two words", "same password", "", "too easy to guess"},
		{"Strong phrase", "purple monkey dishwasher", "", ""},
		{"Long password estimated on its prefix", strings.Repeat("tangerine kite ", 17), "", ""},
	} {
		t.Run("Err"+tc.name, func(t *testing.T) {
			_, err := auth.ValidatePassword(tc.pw, tc.user)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if got, want := unhidra.ErrorCode(err), protocol.ErrInvalid; got != want {
				t.Fatalf("code %q (err %v), want %q", got, err, want)
			}
			if msg := unhidra.ErrorMessage(err); !strings.Contains(msg, tc.msg) || len(msg) > 120 {
				t.Fatalf("message %q, want it to contain %q", msg, tc.msg)
			}
		})
	}

	t.Run("ByteCapAfterNormalisation", func(t *testing.T) {
		p := auth.PasswordPolicy{MaxRunes: 10000, MaxBytes: 1024}
		// 342 decomposed Hangul syllables are 3078 bytes as jamo but 1026
		// bytes in NFC: over the cap only after normalisation is counted.
		jamo := strings.Repeat("\u1112\u1161\u11ab", 342)
		if _, err := p.Validate(jamo, ""); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Fatalf("err = %v, want protocol.ErrInvalid", err)
		}
		// 341 are 1023 bytes in NFC: allowed although the input is 3069 bytes.
		got, err := p.Validate(strings.Repeat("\u1112\u1161\u11ab", 341), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1023 {
			t.Fatalf("normalised length %d, want 1023", len(got))
		}
	})

	t.Run("CustomPolicy", func(t *testing.T) {
		p := auth.PasswordPolicy{MinRunes: 12, MaxRunes: 20, MaxBytes: 1 << 20}
		if _, err := p.Validate("elevenchars", ""); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Errorf("11 runes under MinRunes 12: err = %v", err)
		}
		if _, err := p.Validate("twelve chars", ""); err != nil {
			t.Errorf("12 runes: %v", err)
		}
		if _, err := p.Validate(strings.Repeat("x", 21), ""); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Errorf("21 runes over MaxRunes 20: err = %v", err)
		}
		// MaxBytes is clamped to 4096.
		p = auth.PasswordPolicy{MaxRunes: 1 << 20, MaxBytes: 1 << 20}
		if _, err := p.Validate(strings.Repeat("x", 4097), ""); unhidra.ErrorCode(err) != protocol.ErrInvalid {
			t.Errorf("4097 bytes with MaxBytes 1 MiB: err = %v, want protocol.ErrInvalid (hard cap)", err)
		}
	})

	t.Run("ValidatedPasswordHashesAndVerifies", func(t *testing.T) {
		// The normalised form from Validate and the raw input must hash to
		// the same thing, whichever path the caller takes.
		raw := "A\u030angstro\u0308m\u00a0units"
		n, err := auth.ValidatePassword(raw, "bob")
		if err != nil {
			t.Fatal(err)
		}
		phc := mustHashPassword(t, n, pwTestParams)
		if !mustVerifyPassword(t, raw, phc) {
			t.Fatal("raw input does not verify against the hash of its normalised form")
		}
	})
}

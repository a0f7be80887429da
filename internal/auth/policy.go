package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// passwordHardMaxBytes caps the normalised length of any password that is
// hashed or verified, whatever the policy says. Argon2's cost barely depends on
// the password's length, but normalisation and copying do, and nothing
// legitimate is longer.
const passwordHardMaxBytes = 4096

// PasswordPolicy is the rule a new password must meet. The zero value is
// valid: each zero field means the default documented on it.
type PasswordPolicy struct {
	// MinRunes is the minimum length in characters (Unicode code points after
	// normalisation). Zero means 8.
	MinRunes int
	// MaxRunes is the maximum length in characters. Zero means 256.
	MaxRunes int
	// MaxBytes is the maximum length in UTF-8 bytes after normalisation.
	// Zero means 1024; values above 4096 mean 4096, the limit that
	// HashPassword and VerifyPassword enforce.
	MaxBytes int
	// MinScore is the lowest zxcvbn strength score (0–4) accepted. Zero
	// means 3: at least 10^8 estimated guesses. Negative disables the
	// estimator (the common-password list and the name rule still apply).
	MinScore int
}

// DefaultPasswordPolicy returns the policy with every default filled in:
// 8 to 256 characters and at most 1024 bytes.
func DefaultPasswordPolicy() PasswordPolicy {
	return PasswordPolicy{}.withDefaults()
}

func (p PasswordPolicy) withDefaults() PasswordPolicy {
	if p.MinRunes <= 0 {
		p.MinRunes = 8
	}
	if p.MaxRunes <= 0 {
		p.MaxRunes = 256
	}
	if p.MaxBytes <= 0 {
		p.MaxBytes = 1024
	}
	if p.MinScore == 0 {
		p.MinScore = 3
	}
	p.MaxBytes = min(p.MaxBytes, passwordHardMaxBytes)
	return p
}

// ValidatePassword checks pw against DefaultPasswordPolicy; see
// PasswordPolicy.Validate.
func ValidatePassword(pw, username string) (normalised string, err error) {
	return DefaultPasswordPolicy().Validate(pw, username)
}

// Validate normalises a new password and checks it against the policy.
//
// Normalisation follows the OpaqueString profile of RFC 8265: every non-ASCII
// space (Unicode category Zs, e.g. the no-break space that macOS types for
// Option+Space) becomes U+0020, then the string is put in Unicode
// Normalization Form C, so that "é" typed as one precomposed code point or
// as "e" plus a combining accent is the same password. Nothing else changes:
// case is kept and leading or trailing spaces are not trimmed.
//
// The password must be valid UTF-8, contain no control characters (Unicode
// category Cc: NUL, tab, newline, DEL, C1 controls), and be MinRunes to
// MaxRunes characters and at most MaxBytes bytes long, counted after
// normalisation. Following NIST SP 800-63B (5.1.1.2) there are no
// composition rules; instead the password must not be on the list of
// common passwords that zxcvbn embeds (about 30,000, from breaches), and
// its zxcvbn strength score (dictionaries of common passwords, names,
// English words and TV and film vocabulary, with keyboard patterns,
// repeats, sequences, dates and l33t substitutions; the username counts as
// a dictionary word) must reach MinScore. Any other Unicode is allowed
// (emoji, CJK, right-to-left scripts, joiners and direction marks). If
// username is not empty, the password must not be based on it:
// case-insensitively it must not equal the username nor contain a username
// of three or more characters.
//
// Validate returns the normalised password, which HashPassword would produce
// itself anyway, or a *store.Error with code protocol.ErrInvalid and a message that can
// be shown to the user.
func (p PasswordPolicy) Validate(pw, username string) (normalised string, err error) {
	p = p.withDefaults()
	n, err := normalizePassword(pw, p.MaxBytes)
	if err != nil {
		return "", err
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return "", unhidra.Errorf(protocol.ErrInvalid, "Password must not contain control characters (such as NUL, tab or newline).")
		}
	}
	runes := utf8.RuneCountInString(n)
	if runes < p.MinRunes {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Password must be at least %d characters long.", p.MinRunes)
	}
	if runes > p.MaxRunes {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Password must be at most %d characters long.", p.MaxRunes)
	}
	if basedOnUsername(n, username, p.MinRunes) {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Password must not contain your name.")
	}
	if commonPassword(n) {
		return "", unhidra.Errorf(protocol.ErrInvalid, "This password is on a list of commonly used passwords; choose another.")
	}
	if p.MinScore > 0 {
		if score, why := estimateStrength(n, username); score < p.MinScore {
			return "", unhidra.Errorf(protocol.ErrInvalid, "Password too easy to guess: %s. Try a few unrelated words.", why)
		}
	}
	return n, nil
}

// basedOnUsername reports whether the normalised password pw is username
// (ignoring case), contains a username of three or more characters, or is
// too short once the username is taken out of it.
func basedOnUsername(pw, username string, minRunes int) bool {
	u := strings.ToLower(norm.NFC.String(strings.TrimSpace(username)))
	if u == "" {
		return false
	}
	lp := strings.ToLower(pw)
	if lp == u {
		return true
	}
	if utf8.RuneCountInString(u) < 3 {
		return false // one or two letters say nothing
	}
	return strings.Contains(lp, u) || utf8.RuneCountInString(strings.ReplaceAll(lp, u, "")) < minRunes
}

// normalizePassword maps non-ASCII spaces to U+0020 and applies NFC (see
// PasswordPolicy.Validate). It fails with protocol.ErrInvalid when pw is not valid UTF-8
// or is longer than maxBytes after normalisation.
func normalizePassword(pw string, maxBytes int) (string, error) {
	// NFC shrinks text by at most a factor of 3 (Hangul L+V+T jamo), so
	// anything longer than 4×maxBytes is rejected before doing any work.
	if len(pw) > 4*maxBytes {
		return "", passwordTooLong(maxBytes)
	}
	if !utf8.ValidString(pw) {
		// Checked first: strings.Map would turn each invalid byte into U+FFFD,
		// making distinct byte strings the same password.
		return "", unhidra.Errorf(protocol.ErrInvalid, "Password must be valid UTF-8 text.")
	}
	if strings.IndexFunc(pw, isNonASCIISpace) >= 0 {
		pw = strings.Map(func(r rune) rune {
			if isNonASCIISpace(r) {
				return ' '
			}
			return r
		}, pw)
	}
	pw = norm.NFC.String(pw)
	if len(pw) > maxBytes {
		return "", passwordTooLong(maxBytes)
	}
	return pw, nil
}

func isNonASCIISpace(r rune) bool {
	return r != ' ' && unicode.Is(unicode.Zs, r)
}

func passwordTooLong(maxBytes int) error {
	return unhidra.Errorf(protocol.ErrInvalid, "Password must be at most %d bytes long once encoded as UTF-8.", maxBytes)
}

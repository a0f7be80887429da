package auth

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/names"
	"github.com/unhidra/unhidra/protocol"
)

// Name rules: 2–32 characters after PRECIS enforcement (see package
// names): letters, digits, '.', '_' and '-' (any script), starting with a
// letter or digit, no invisible or formatting characters. Names appear in
// mentions, DMs and logs, so they are kept free of spaces, controls and
// markup; uniqueness is on the confusable skeleton (the store checks it).
const (
	minNameRunes = 2
	maxNameRunes = 32
)

// ValidateName checks and normalises a login name.
func ValidateName(name string) (string, error) {
	if len(name) > unhidra.MaxNameLen*4 || !utf8.ValidString(name) {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Name must be valid UTF-8 of at most %d characters.", maxNameRunes)
	}
	n, err := names.User(name)
	if err != nil {
		if errors.Is(err, names.ErrNotIdentifer) && strings.TrimSpace(name) == "" {
			return "", unhidra.Errorf(protocol.ErrInvalid, "Name must be %d to %d characters long.", minNameRunes, maxNameRunes)
		}
		return "", unhidra.Errorf(protocol.ErrInvalid, "%s", err.Error())
	}
	r := utf8.RuneCountInString(n)
	if r < minNameRunes || r > maxNameRunes || len(n) > unhidra.MaxNameLen {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Name must be %d to %d characters long.", minNameRunes, maxNameRunes)
	}
	return n, nil
}

// ValidateDisplayName checks and normalises a display name: any printable
// text up to 128 characters, trimmed.
func ValidateDisplayName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Display name must be valid UTF-8.")
	}
	s = strings.TrimSpace(norm.NFC.String(s))
	if utf8.RuneCountInString(s) > unhidra.MaxDisplayNameLen || len(s) > 4*unhidra.MaxDisplayNameLen {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Display name must be at most %d characters.", unhidra.MaxDisplayNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", unhidra.Errorf(protocol.ErrInvalid, "Display name must not contain control characters.")
		}
	}
	return s, nil
}

// normalizeForLogin puts a presented password into the form it was hashed
// in (NFC) without applying the creation policy: a password accepted under
// an older policy must still sign in.
func normalizeForLogin(pw string) (string, error) {
	if !utf8.ValidString(pw) {
		return "", unhidra.Errorf(protocol.ErrInvalid, "Password must be valid UTF-8.")
	}
	return norm.NFC.String(pw), nil
}

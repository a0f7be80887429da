// Package names decides which names may stand for an identity where people
// see them: user names (PRECIS, RFC 8265/8264) and device names, with a
// confusable skeleton (Unicode UTS #39) so that two names that look alike
// cannot both exist.
package names

//lint:file-ignore ST1005 the error messages are shown to people as they are (full sentences)

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// Errors, each with a message that can be shown to the person choosing the
// name.
var (
	ErrInvisible    = errors.New("Names must not contain invisible or formatting characters.")
	ErrLeadingMark  = errors.New("Names must not start with a combining mark.")
	ErrNotIdentifer = errors.New("Names may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit.")
	ErrControl      = errors.New("Names must not contain control characters.")
)

// User checks a user name against the PRECIS UsernameCasePreserved profile
// (width-mapped, NFC, IdentifierClass: no spaces, symbols, controls,
// default-ignorable or unassigned code points; the Bidi rule) and the
// stricter rules of Unhidra: letters, digits and '.', '_', '-' only, the
// first a letter or digit. It returns the enforced form (fullwidth letters
// become ASCII, for example).
func User(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", ErrNotIdentifer
	}
	if err := visible(name); err != nil {
		return "", err
	}
	out, err := precis.UsernameCasePreserved.String(name)
	if err != nil {
		return "", ErrNotIdentifer
	}
	for i, r := range out {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) ||
			(i > 0 && (r == '.' || r == '_' || r == '-'))
		if !ok {
			if i == 0 && unicode.Is(unicode.M, r) {
				return "", ErrLeadingMark
			}
			return "", ErrNotIdentifer
		}
	}
	return out, nil
}

// Device checks a device's display name: any visible text (spaces allowed
// inside), NFC, no controls, no invisible or formatting characters, no
// leading combining mark. It returns the name trimmed and NFC-normalised.
func Device(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", ErrControl
	}
	name = strings.TrimSpace(norm.NFC.String(name))
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", ErrControl
	}
	if err := visible(name); err != nil {
		return "", err
	}
	return name, nil
}

// visible refuses default-ignorable and other invisible code points
// (variation selectors, joiners, fillers, bidi controls, tags) and a
// leading combining mark.
func visible(s string) error {
	for i, r := range s {
		if i == 0 && unicode.Is(unicode.M, r) {
			return ErrLeadingMark
		}
		if invisible(r) {
			return ErrInvisible
		}
	}
	return nil
}

// invisible reports whether r is a Default_Ignorable_Code_Point (Unicode
// DerivedCoreProperties), a format character (Cf) or a blank filler that
// renders as nothing.
func invisible(r rune) bool {
	if unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Variation_Selector, r) {
		return true
	}
	switch {
	case r == 0x034F, // combining grapheme joiner
		r == 0x115F || r == 0x1160, // Hangul choseong/jungseong fillers
		r == 0x3164,                // Hangul filler
		r == 0xFFA0,                // halfwidth Hangul filler
		r == 0x2800,                // braille blank
		r >= 0x17B4 && r <= 0x17B5,
		r >= 0x180B && r <= 0x180F, // Mongolian free variation selectors, vowel separator
		r >= 0x200B && r <= 0x200F,
		r >= 0x202A && r <= 0x202E,
		r >= 0x2060 && r <= 0x206F,
		r == 0xFEFF,
		r >= 0xE0000 && r <= 0xE0FFF:
		return true
	}
	return unicode.IsSpace(r) && r != ' '
}

// Skeleton returns the form two names are compared in to decide whether
// they could be mistaken for each other: width-mapped, mapped through the
// UTS #39 confusables table, case-folded, and mapped and folded again (so "r00t", "ROOT",
// "rооt" with Cyrillic o and "ｒｏｏｔ" all give the skeleton of "root").
// Spaces and separators '.', '_', '-' are kept.
func Skeleton(name string) string {
	// The table is case-sensitive ("I" looks like "l", "i" does not), so it
	// applies to the name as typed first, then to the folded result.
	s := fold(confusables.Skeleton(norm.NFKC.String(name)))
	s = fold(confusables.Skeleton(s))
	return norm.NFC.String(s)
}

func fold(s string) string {
	if out, err := precis.UsernameCaseMapped.String(s); err == nil {
		return out
	}
	// Not a valid identifier (a device name with spaces): fold it anyway.
	return strings.ToLower(norm.NFKC.String(s))
}

package auth

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
)

// decodeIssuedClaims decodes the claims JSON exactly as Issue's encoder
// writes it — one flat object, no whitespace, strings without escapes — into
// w, without encoding/json's reflection (which cost about a quarter of a
// handshake's token check besides the signature). ok is false for anything
// else: an escape, whitespace, an unknown or repeated member, a null, a
// number with a fraction or exponent, invalid UTF-8; the caller then decodes
// with encoding/json. Whatever it accepts, it decodes to the same values as
// json.Unmarshal would (TestDecodeIssuedClaims_AgreesWithJSON).
func decodeIssuedClaims(p []byte, w *wireClaims) (ok bool) {
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return false
	}
	p = p[1 : len(p)-1]
	var seen uint16
	for first := true; len(p) > 0 || first; first = false {
		if !first {
			if p[0] != ',' {
				return false
			}
			p = p[1:]
		}
		var key []byte
		if key, p, ok = plainString(p); !ok || len(p) == 0 || p[0] != ':' {
			return false
		}
		p = p[1:]
		var bit uint16
		switch string(key) {
		case "iss":
			bit = 1 << 0
			p, ok = strInto(p, &w.Issuer)
		case "sub":
			bit = 1 << 1
			p, ok = strInto(p, &w.Subject)
		case "jti":
			bit = 1 << 2
			p, ok = strInto(p, &w.ID)
		case "name":
			bit = 1 << 3
			p, ok = strInto(p, &w.Name)
		case "role":
			var r []byte
			r, p, ok = plainString(p)
			bit, w.Role = 1<<4, roleOf(r)
		case "exp":
			bit = 1 << 5
			p, ok = dateInto(p, &w.ExpiresAt)
		case "nbf":
			bit = 1 << 6
			p, ok = dateInto(p, &w.NotBefore)
		case "iat":
			bit = 1 << 7
			p, ok = dateInto(p, &w.IssuedAt)
		case "sep":
			var n []byte
			if n, p, ok = integer(p); ok {
				var err error
				w.Epoch, err = strconv.ParseInt(string(n), 10, 64)
				ok = err == nil
			}
			bit = 1 << 8
		case "aud":
			bit = 1 << 9
			p, ok = audInto(p, &w.Audience)
		}
		if !ok || bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return true
}

// The *Into functions decode one value at the start of p into dst and
// return the input after it.

func strInto(p []byte, dst *string) (rest []byte, ok bool) {
	s, rest, ok := plainString(p)
	*dst = string(s)
	return rest, ok
}

// dateInto decodes an integer as encoding/json decodes a number into a
// float64.
func dateInto(p []byte, dst **float64) (rest []byte, ok bool) {
	n, rest, ok := integer(p)
	if !ok {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	*dst = &f
	return rest, err == nil
}

// audInto keeps the audience raw, as encoding/json does for a
// json.RawMessage (audience() judges it): a plain string or an array of them.
func audInto(p []byte, dst *json.RawMessage) (rest []byte, ok bool) {
	if len(p) == 0 || p[0] != '[' {
		_, rest, ok := plainString(p)
		if ok {
			*dst = json.RawMessage(p[:len(p)-len(rest)])
		}
		return rest, ok
	}
	i := bytes.IndexByte(p, ']') // a ']' inside a string: not plain, refused below
	if i < 0 || !eachPlainString(p[1:i], func([]byte) {}) {
		return nil, false
	}
	*dst = json.RawMessage(p[:i+1])
	return p[i+1:], true
}

// roleOf returns the role constant for s, so the common roles share storage.
func roleOf(s []byte) unhidra.Role {
	for _, r := range [...]unhidra.Role{unhidra.RoleMember, unhidra.RoleAdmin, unhidra.RoleBot} {
		if string(r) == string(s) {
			return r
		}
	}
	return unhidra.Role(s)
}

// plainString reads a JSON string without escapes or control characters,
// valid UTF-8, at the start of p.
func plainString(p []byte) (s, rest []byte, ok bool) {
	if len(p) == 0 || p[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			s = p[1:i]
			return s, p[i+1:], utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// integer reads -?[0-9]+ (no leading zeros but "0") at the start of p.
func integer(p []byte) (n, rest []byte, ok bool) {
	i := 0
	if i < len(p) && p[i] == '-' {
		i++
	}
	start := i
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	if i == start || (p[start] == '0' && i-start > 1) {
		return nil, nil, false
	}
	return p[:i], p[i:], true
}

// plainStrings decodes an array of plain strings (see plainString), as
// written by Issue: ok is false for anything else.
func plainStrings(raw []byte) (ss []string, ok bool) {
	if len(raw) < 2 || raw[0] != '[' || raw[len(raw)-1] != ']' {
		return nil, false
	}
	ss = []string{} // encoding/json decodes [] to an empty, non-nil slice
	if !eachPlainString(raw[1:len(raw)-1], func(s []byte) { ss = append(ss, string(s)) }) {
		return nil, false
	}
	return ss, true
}

// eachPlainString calls f with each string of q, the inside of an array of
// plain strings (see plainString) separated by single commas; false for
// anything else. The one walk both audInto and plainStrings use, so what
// the fast decoder accepts and what audience() decodes cannot drift apart.
func eachPlainString(q []byte, f func(s []byte)) bool {
	for len(q) > 0 {
		s, rest, ok := plainString(q)
		if !ok {
			return false
		}
		f(s)
		if len(rest) > 0 {
			if rest[0] != ',' || len(rest) == 1 {
				return false
			}
			rest = rest[1:]
		}
		q = rest
	}
	return true
}

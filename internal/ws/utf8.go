package ws

import "unicode/utf8"

// utf8Validator checks UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
// above U+10FFFF) across arbitrary chunk boundaries, so a text message can be
// rejected as soon as its first bad byte arrives, even mid-fragment. Its state
// is three bytes: how many continuation bytes the current rune still needs
// and the range the next one must fall in.
type utf8Validator struct {
	need   uint8
	lo, hi byte
}

// write validates the next chunk and reports whether the text is still valid
// so far.
func (v *utf8Validator) write(p []byte) bool {
	// Finish a rune left open by the previous chunk byte by byte.
	for v.need > 0 && len(p) > 0 {
		if !v.step(p[0]) {
			return false
		}
		p = p[1:]
	}
	if len(p) == 0 {
		return true
	}
	// The bulk goes to the standard library; only a rune cut by the end of
	// the chunk goes through the state machine.
	tail := incompleteTail(p)
	if !utf8.Valid(p[:len(p)-tail]) {
		return false
	}
	for _, b := range p[len(p)-tail:] {
		if !v.step(b) {
			return false
		}
	}
	return true
}

// complete reports whether the text seen so far ends on a rune boundary.
func (v *utf8Validator) complete() bool { return v.need == 0 }

func (v *utf8Validator) reset() { *v = utf8Validator{} }

// step consumes one byte.
func (v *utf8Validator) step(b byte) bool {
	if v.need > 0 {
		if b < v.lo || b > v.hi {
			return false
		}
		v.need--
		v.lo, v.hi = 0x80, 0xBF
		return true
	}
	switch {
	case b < 0x80:
		return true
	case b >= 0xC2 && b <= 0xDF:
		v.need, v.lo, v.hi = 1, 0x80, 0xBF
	case b == 0xE0: // exclude overlong 3-byte forms
		v.need, v.lo, v.hi = 2, 0xA0, 0xBF
	case b == 0xED: // exclude UTF-16 surrogates U+D800–U+DFFF
		v.need, v.lo, v.hi = 2, 0x80, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		v.need, v.lo, v.hi = 2, 0x80, 0xBF
	case b == 0xF0: // exclude overlong 4-byte forms
		v.need, v.lo, v.hi = 3, 0x90, 0xBF
	case b >= 0xF1 && b <= 0xF3:
		v.need, v.lo, v.hi = 3, 0x80, 0xBF
	case b == 0xF4: // nothing above U+10FFFF
		v.need, v.lo, v.hi = 3, 0x80, 0x8F
	default:
		return false
	}
	return true
}

// incompleteTail returns how many bytes at the end of p form the start of a
// multi-byte rune that p cuts short (0–3). It only looks at lead bytes and
// their length: whether those bytes are valid is left to the caller.
func incompleteTail(p []byte) int {
	// A rune is at most 4 bytes, so its lead byte is within the last 3 bytes
	// if the rune is incomplete.
	for i := 1; i <= 3 && i <= len(p); i++ {
		b := p[len(p)-i]
		if b < 0x80 {
			return 0 // ASCII: everything before and including it is whole
		}
		if b >= 0xC0 { // a lead byte
			size := 0
			switch {
			case b >= 0xF0:
				size = 4
			case b >= 0xE0:
				size = 3
			default:
				size = 2
			}
			if size > i {
				return i
			}
			return 0
		}
		// A continuation byte: keep looking for its lead.
	}
	return 0
}

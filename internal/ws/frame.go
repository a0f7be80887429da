package ws

import (
	"encoding/binary"
	"unicode/utf8"
)

// Opcode is a WebSocket frame opcode (RFC 6455 §5.2).
type Opcode byte

// The opcodes defined by RFC 6455. The others are reserved and make the
// parser fail the connection with CloseProtocolError.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// isControl reports whether op is a control opcode (close, ping, pong or a
// reserved control opcode).
func (op Opcode) isControl() bool { return op&0x8 != 0 }

// Close status codes (RFC 6455 §7.4.1 and the IANA registry). Codes 1005,
// 1006 and 1015 are never sent on the wire; this package uses CloseAbnormal
// in a CloseError when no close frame was exchanged. Applications use
// 3000–4999.
const (
	CloseNormal             = 1000
	CloseGoingAway          = 1001
	CloseProtocolError      = 1002
	CloseUnsupportedData    = 1003
	CloseNoStatus           = 1005
	CloseAbnormal           = 1006
	CloseInvalidPayload     = 1007
	ClosePolicyViolation    = 1008
	CloseMessageTooBig      = 1009
	CloseMandatoryExtension = 1010
	CloseInternalError      = 1011
	CloseServiceRestart     = 1012
	CloseTryAgainLater      = 1013
	CloseBadGateway         = 1014
)

// MaxControlPayload is the largest payload a control frame may carry.
const MaxControlPayload = 125

// maxHeaderLen is the longest frame header: 2 fixed bytes, 8 bytes of
// extended length and a 4-byte masking key.
const maxHeaderLen = 14

// ValidCloseCode reports whether code may appear in a close frame on the
// wire (RFC 6455 §7.4; 1012–1014 are registered with IANA since).
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// AppendFrame appends one unmasked (server-to-client) frame to dst and
// returns the extended slice. It does not validate op or the payload: a
// control frame must have fin set and at most MaxControlPayload bytes.
func AppendFrame(dst []byte, op Opcode, fin bool, payload []byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// frameSize returns the length of the frame AppendFrame would produce for a
// payload of n bytes.
func frameSize(n int) int {
	switch {
	case n <= 125:
		return 2 + n
	case n <= 0xFFFF:
		return 4 + n
	default:
		return 10 + n
	}
}

// AppendClose appends a close frame carrying code and reason to dst. A code
// that ValidCloseCode rejects (including CloseNoStatus) produces a close frame
// with an empty payload. The reason is cut at a UTF-8 boundary to fit the
// 123 bytes a control frame leaves for it.
func AppendClose(dst []byte, code int, reason string) []byte {
	if !ValidCloseCode(code) {
		return AppendFrame(dst, OpClose, true, nil)
	}
	reason = truncateUTF8(reason, MaxControlPayload-2)
	var payload [MaxControlPayload]byte
	binary.BigEndian.PutUint16(payload[:2], uint16(code))
	n := 2 + copy(payload[2:], reason)
	return AppendFrame(dst, OpClose, true, payload[:n])
}

// truncateUTF8 returns the longest prefix of s that is valid UTF-8, ends on
// a rune boundary and is at most max bytes long.
func truncateUTF8(s string, max int) string {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size <= 1) || i+size > max {
			return s[:i]
		}
		i += size
	}
	return s
}

// PreparedMessage is a data message framed once, for sending the same bytes
// to many connections: a broadcast serialises once and every connection's
// queue holds a reference to the same immutable frame. It is safe for
// concurrent use.
type PreparedMessage struct {
	frame []byte
	text  bool
}

// NewPreparedMessage frames payload as a single unfragmented text (text
// true) or binary message. It copies payload. Text payloads should be valid
// UTF-8; that is the caller's contract and is not checked here.
func NewPreparedMessage(text bool, payload []byte) *PreparedMessage {
	op := OpBinary
	if text {
		op = OpText
	}
	return &PreparedMessage{frame: AppendFrame(make([]byte, 0, frameSize(len(payload))), op, true, payload), text: text}
}

// Len returns the number of bytes the message occupies on the wire (and in a
// connection's queue).
func (pm *PreparedMessage) Len() int { return len(pm.frame) }

// maskBytes XORs b with the masking key, starting at key offset pos (0–3),
// and returns the key offset for the byte after b. Masking and unmasking are
// the same operation.
func maskBytes(key [4]byte, pos int, b []byte) int {
	if len(b) >= 16 {
		// Rotate the key so that b[0] lines up with key[0], then XOR eight
		// bytes at a time.
		var k [8]byte
		for i := range k {
			k[i] = key[(pos+i)&3]
		}
		k64 := binary.LittleEndian.Uint64(k[:])
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}

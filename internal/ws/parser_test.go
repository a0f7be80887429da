package ws

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// clientFrame builds a client-to-server frame. mask=false makes an (illegal)
// unmasked frame; rsv is OR-ed into the first byte.
func clientFrame(op Opcode, fin bool, payload []byte, opts ...func(*frameOpts)) []byte {
	o := frameOpts{masked: true, key: [4]byte{0x37, 0xfa, 0x21, 0x3d}}
	for _, f := range opts {
		f(&o)
	}
	b0 := byte(op) | o.rsv
	if fin {
		b0 |= 0x80
	}
	var out []byte
	n := len(payload)
	maskBit := byte(0)
	if o.masked {
		maskBit = 0x80
	}
	switch {
	case n <= 125 && !o.long64:
		out = append(out, b0, maskBit|byte(n))
	case n <= 0xFFFF && !o.long64:
		out = append(out, b0, maskBit|126, byte(n>>8), byte(n))
	default:
		out = append(out, b0, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !o.masked {
		return append(out, payload...)
	}
	out = append(out, o.key[:]...)
	start := len(out)
	out = append(out, payload...)
	maskBytes(o.key, 0, out[start:])
	return out
}

type frameOpts struct {
	masked bool
	long64 bool
	rsv    byte
	key    [4]byte
}

func unmasked(o *frameOpts)   { o.masked = false }
func rsv1(o *frameOpts)       { o.rsv = 0x40 }
func longLength(o *frameOpts) { o.long64 = true }

func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// recorder is a parserSink that logs events as strings, copying payloads.
type recorder struct{ events []string }

func (r *recorder) onMessage(text bool, p []byte) {
	kind := "binary"
	if text {
		kind = "text"
	}
	r.events = append(r.events, fmt.Sprintf("%s:%q", kind, p))
}
func (r *recorder) onPing(p []byte) { r.events = append(r.events, fmt.Sprintf("ping:%q", p)) }
func (r *recorder) onPong(p []byte) { r.events = append(r.events, fmt.Sprintf("pong:%q", p)) }
func (r *recorder) onClose(code int, reason string) {
	r.events = append(r.events, fmt.Sprintf("close:%d:%q", code, reason))
}

// parseChunked feeds input to a fresh parser in the given chunk sizes (the
// last chunk takes the rest) and returns the events and the error code (0 if
// none). It checks the parser's memory bound after every chunk.
func parseChunked(t testing.TB, max int64, input []byte, sizes func() int) ([]string, int) {
	t.Helper()
	in := bytes.Clone(input) // feed unmasks in place
	p := newParser(max)
	var rec recorder
	code := 0
	for len(in) > 0 {
		n := sizes()
		if n <= 0 || n > len(in) {
			n = len(in)
		}
		if err := p.feed(in[:n], &rec); err != nil && code == 0 {
			code = err.code
		}
		if int64(cap(p.msg)) > max || cap(p.ctl) > MaxControlPayload {
			t.Fatalf("buffers over bound: msg cap %d (max %d), ctl cap %d", cap(p.msg), max, cap(p.ctl))
		}
		in = in[n:]
	}
	if !p.partial() && (p.msg != nil || p.ctl != nil) {
		t.Fatalf("buffers retained between messages: msg=%d ctl=%d", cap(p.msg), cap(p.ctl))
	}
	return rec.events, code
}

func oneShot() int { return 0 }

func concat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func TestParser_Messages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: 64-bit length
	mid := bytes.Repeat([]byte("x"), 300)                 // 16-bit length
	tests := []struct {
		name  string
		input []byte
		want  []string
	}{
		{"text", clientFrame(OpText, true, []byte("hello")), []string{`text:"hello"`}},
		{"binary", clientFrame(OpBinary, true, []byte{0, 1, 2}), []string{`binary:"\x00\x01\x02"`}},
		{"empty text", clientFrame(OpText, true, nil), []string{`text:""`}},
		{"16-bit length", clientFrame(OpBinary, true, mid), []string{fmt.Sprintf("binary:%q", mid)}},
		{"64-bit length", clientFrame(OpBinary, true, big), []string{fmt.Sprintf("binary:%q", big)}},
		{"non-minimal length accepted", clientFrame(OpText, true, []byte("hi"), longLength), []string{`text:"hi"`}},
		{"fragments with interleaved ping and pong", concat(
			clientFrame(OpText, false, []byte("hel")),
			clientFrame(OpPing, true, []byte("p1")),
			clientFrame(OpContinuation, false, nil),
			clientFrame(OpPong, true, nil),
			clientFrame(OpContinuation, true, []byte("lo")),
		), []string{`ping:"p1"`, `pong:""`, `text:"hello"`}},
		{"utf8 rune split across fragments", concat(
			clientFrame(OpText, false, []byte("caf\xc3")),
			clientFrame(OpContinuation, true, []byte("\xa9")),
		), []string{`text:"café"`}},
		{"empty fragments", concat(
			clientFrame(OpBinary, false, nil),
			clientFrame(OpContinuation, true, []byte("z")),
		), []string{`binary:"z"`}},
		{"all fragments empty", concat(
			clientFrame(OpText, false, nil),
			clientFrame(OpContinuation, true, nil),
		), []string{`text:""`}},
		{"close with code and reason", clientFrame(OpClose, true, closePayload(1000, "bye")), []string{`close:1000:"bye"`}},
		{"close without payload", clientFrame(OpClose, true, nil), []string{`close:1005:""`}},
		{"input after close ignored", concat(
			clientFrame(OpClose, true, closePayload(4000, "")),
			clientFrame(OpText, true, []byte("late")),
			[]byte{0xff, 0xff},
		), []string{`close:4000:""`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3, 7, 100} {
				got, code := parseChunked(t, 1<<20, tt.input, func() int { return chunk })
				if code != 0 {
					t.Fatalf("chunk %d: error code %d", chunk, code)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("chunk %d:\n got %v\nwant %v", chunk, got, tt.want)
				}
			}
		})
	}
}

func TestParser_Errors(t *testing.T) {
	tests := []struct {
		name  string
		max   int64
		input []byte
		code  int
		want  []string // events before the error
	}{
		{"unmasked", 0, clientFrame(OpText, true, []byte("x"), unmasked), CloseProtocolError, nil},
		{"reserved bit", 0, clientFrame(OpText, true, []byte("x"), rsv1), CloseProtocolError, nil},
		{"reserved data opcode", 0, clientFrame(Opcode(3), true, nil), CloseProtocolError, nil},
		{"reserved control opcode", 0, clientFrame(Opcode(0xB), true, nil), CloseProtocolError, nil},
		{"fragmented ping", 0, clientFrame(OpPing, false, nil), CloseProtocolError, nil},
		{"control payload 126", 0, clientFrame(OpPing, true, make([]byte, 126)), CloseProtocolError, nil},
		{"continuation without message", 0, clientFrame(OpContinuation, true, []byte("x")), CloseProtocolError, nil},
		{"text inside fragmented message", 0, concat(
			clientFrame(OpText, false, []byte("a")),
			clientFrame(OpText, true, []byte("b")),
		), CloseProtocolError, nil},
		{"length with top bit", 0, append([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 3, 4), CloseProtocolError, nil},
		{"message too big", 10, clientFrame(OpBinary, true, make([]byte, 11)), CloseMessageTooBig, nil},
		{"fragmented message too big", 10, concat(
			clientFrame(OpBinary, false, make([]byte, 6)),
			clientFrame(OpContinuation, true, make([]byte, 5)),
		), CloseMessageTooBig, nil},
		{"message at the limit", 10, concat(
			clientFrame(OpBinary, true, make([]byte, 10)),
			clientFrame(OpText, true, make([]byte, 11)),
		), CloseMessageTooBig, []string{fmt.Sprintf("binary:%q", make([]byte, 10))}},
		{"invalid utf8", 0, clientFrame(OpText, true, []byte("a\xffb")), CloseInvalidPayload, nil},
		{"surrogate", 0, clientFrame(OpText, true, []byte("\xed\xa0\x80")), CloseInvalidPayload, nil},
		{"overlong", 0, clientFrame(OpText, true, []byte("\xc0\xaf")), CloseInvalidPayload, nil},
		{"truncated rune at end of message", 0, clientFrame(OpText, true, []byte("ab\xe2\x82")), CloseInvalidPayload, nil},
		{"invalid utf8 in first fragment fails before the end", 0,
			clientFrame(OpText, false, []byte("\xf5")), CloseInvalidPayload, nil},
		{"invalid utf8 across fragments", 0, concat(
			clientFrame(OpText, false, []byte("\xe2\x82")),
			clientFrame(OpContinuation, true, []byte("\x28")),
		), CloseInvalidPayload, nil},
		{"binary is not utf8-checked", 0, concat(
			clientFrame(OpBinary, true, []byte("\xff")),
			clientFrame(OpText, true, []byte("\xff")),
		), CloseInvalidPayload, []string{`binary:"\xff"`}},
		{"close payload of one byte", 0, clientFrame(OpClose, true, []byte{3}), CloseProtocolError, nil},
		{"close code 1005", 0, clientFrame(OpClose, true, closePayload(1005, "")), CloseProtocolError, nil},
		{"close code 999", 0, clientFrame(OpClose, true, closePayload(999, "")), CloseProtocolError, nil},
		{"close code 5000", 0, clientFrame(OpClose, true, closePayload(5000, "")), CloseProtocolError, nil},
		{"close reason not utf8", 0, clientFrame(OpClose, true, closePayload(1000, "\xff")), CloseInvalidPayload, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1 << 16
			}
			for _, chunk := range []int{0, 1, 5} {
				got, code := parseChunked(t, max, tt.input, func() int { return chunk })
				if code != tt.code {
					t.Fatalf("chunk %d: code %d, want %d (events %v)", chunk, code, tt.code, got)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("chunk %d: events %v, want %v", chunk, got, tt.want)
				}
			}
		})
	}
}

// TestParser_FailsFast checks that a frame is rejected from its first bytes:
// an unmasked frame or an oversized declared length must not wait for (or
// buffer) a payload.
func TestParser_FailsFast(t *testing.T) {
	p := newParser(1024)
	var rec recorder
	if err := p.feed([]byte{0x81, 0x05}, &rec); err != errUnmasked {
		t.Fatalf("unmasked after 2 bytes: got %v", err)
	}
	p = newParser(1024)
	hdr := []byte{0x82, 0xFF, 0, 0, 0, 0, 0x7F, 0, 0, 0, 1, 2, 3, 4} // 2 GiB declared
	if err := p.feed(hdr, &rec); err != errMessageTooBig {
		t.Fatalf("oversized declared length: got %v", err)
	}
	if p.msg != nil {
		t.Fatal("buffered payload for an oversized frame")
	}
}

// TestParser_ZeroCopy checks that a whole unfragmented message in one chunk
// is delivered as a slice of the input, with no message buffer allocated.
func TestParser_ZeroCopy(t *testing.T) {
	in := clientFrame(OpBinary, true, bytes.Repeat([]byte("a"), 1000))
	p := newParser(1 << 16)
	var got []byte
	sink := funcSink{msg: func(_ bool, b []byte) { got = b }}
	if err := p.feed(in, sink); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1000 || &got[0] != &in[len(in)-1000] {
		t.Fatal("payload was copied")
	}
	if p.msg != nil || p.partial() {
		t.Fatal("parser kept state after a complete message")
	}
}

type funcSink struct {
	msg func(bool, []byte)
}

func (s funcSink) onMessage(text bool, p []byte) { s.msg(text, p) }
func (funcSink) onPing([]byte)                   {}
func (funcSink) onPong([]byte)                   {}
func (funcSink) onClose(int, string)             {}

// TestParser_GrowthIsGeometric guards against quadratic copying when a big
// message arrives as many small fragments.
func TestParser_GrowthIsGeometric(t *testing.T) {
	p := newParser(1 << 20)
	var rec recorder
	reallocs := 0
	lastCap := 0
	frag := clientFrame(OpContinuation, false, bytes.Repeat([]byte("y"), 10))
	if err := p.feed(clientFrame(OpBinary, false, []byte("x")), &rec); err != nil {
		t.Fatal(err)
	}
	for range 10000 {
		if err := p.feed(bytes.Clone(frag), &rec); err != nil {
			t.Fatal(err)
		}
		if cap(p.msg) != lastCap {
			reallocs++
			lastCap = cap(p.msg)
		}
	}
	if reallocs > 20 {
		t.Fatalf("%d reallocations for 10,000 fragments", reallocs)
	}
}

func TestUTF8Validator(t *testing.T) {
	samples := []string{
		"", "plain ascii", "café", "日本語", "🙂🙃", "\xed\x9f\xbf", "\xee\x80\x80", "\xf4\x8f\xbf\xbf",
		"\xff", "\xc0\x80", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
		"a\xe2\x82", "\x80", "\xc3", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82b",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range samples {
		want := utf8.ValidString(s)
		for range 50 {
			var v utf8Validator
			ok := true
			for rest := []byte(s); len(rest) > 0; {
				n := 1 + rng.IntN(len(rest))
				ok = ok && v.write(rest[:n])
				rest = rest[n:]
			}
			got := ok && v.complete()
			if got != want {
				t.Fatalf("%q: validator says %v, utf8.Valid says %v", s, got, want)
			}
		}
	}
}

func TestAppendClose(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	f := AppendClose(nil, 4001, long)
	if len(f) != 2+MaxControlPayload-1 { // 123 bytes of reason would split a rune: 122
		t.Fatalf("frame length %d", len(f))
	}
	if !utf8.Valid(f[4:]) {
		t.Fatal("reason cut inside a rune")
	}
	if got := AppendClose(nil, CloseNoStatus, "x"); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf("1005 must give an empty close frame, got %x", got)
	}
}

func TestAppendFrame_Lengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xFFFF, 0x10000} {
		f := AppendFrame(nil, OpBinary, true, make([]byte, n))
		if len(f) != frameSize(n) {
			t.Fatalf("n=%d: frame %d bytes, frameSize says %d", n, len(f), frameSize(n))
		}
		// Mask it as a client would and parse it back.
		masked := make([]byte, 0, len(f)+4)
		masked = append(masked, f[0], f[1]|0x80)
		hl := headerLen(f[1]) - 4
		masked = append(masked, f[2:hl]...)
		masked = append(masked, 0, 0, 0, 0)
		masked = append(masked, f[hl:]...)
		got, code := parseChunked(t, 1<<20, masked, oneShot)
		if code != 0 || len(got) != 1 {
			t.Fatalf("n=%d: round trip gave %d events, code %d", n, len(got), code)
		}
	}
}

func TestMaskBytes(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for n := range 40 {
		for pos := range 4 {
			b := bytes.Repeat([]byte{0xAA}, n)
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= key[(pos+i)&3]
			}
			next := maskBytes(key, pos, b)
			if !bytes.Equal(b, want) || next != (pos+n)&3 {
				t.Fatalf("n=%d pos=%d: wrong result", n, pos)
			}
		}
	}
}

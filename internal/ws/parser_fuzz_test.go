package ws

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
	"unicode/utf8"
)

const fuzzMaxMessage = 1024

// FuzzParserRaw feeds arbitrary bytes: the parser must not panic, must stay
// within its memory bound, and must give the same events and error whether
// the input arrives in one piece or in chunks.
func FuzzParserRaw(f *testing.F) {
	f.Add(clientFrame(OpText, true, []byte("hello")), uint64(1))
	f.Add(concat(clientFrame(OpText, false, []byte("he")), clientFrame(OpPing, true, []byte("x")),
		clientFrame(OpContinuation, true, []byte("llo"))), uint64(7))
	f.Add(clientFrame(OpClose, true, closePayload(1000, "bye")), uint64(3))
	f.Add([]byte{0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4}, uint64(9))
	f.Fuzz(func(t *testing.T, input []byte, seed uint64) {
		checkChunkingInvariant(t, input, seed)
	})
}

// FuzzParserFrames builds well-formed-ish masked frames from the fuzz input,
// so the fuzzer spends its time inside fragmentation, UTF-8 and size logic
// rather than on the mask bit. Each frame is described by one spec byte:
// bits 0–1 pick the opcode (continuation, text, binary, control), bit 2 fin,
// bit 3 makes it a ping/pong/close (for control), bits 4–7 the length class.
func FuzzParserFrames(f *testing.F) {
	f.Add([]byte{0x15, 0x16, 0x24}, []byte("héllo wörld"), uint64(1))
	f.Add([]byte{0x01, 0x0B, 0x04}, []byte("\xe2\x82\xac"), uint64(2))
	f.Add([]byte{0xF5}, []byte("x"), uint64(3))
	f.Fuzz(func(t *testing.T, specs, payload []byte, seed uint64) {
		if len(specs) > 64 {
			specs = specs[:64]
		}
		var input []byte
		for i, s := range specs {
			op := []Opcode{OpContinuation, OpText, OpBinary, OpPing}[s&3]
			if op == OpPing && s&8 != 0 {
				op = []Opcode{OpPong, OpClose}[i%2]
			}
			n := int(s>>4) * 97 // up to 1,455 bytes, beyond fuzzMaxMessage
			if op.isControl() && n > MaxControlPayload {
				n %= MaxControlPayload + 1
			}
			p := make([]byte, n)
			for j := range p {
				if len(payload) > 0 {
					p[j] = payload[(i+j)%len(payload)]
				}
			}
			input = append(input, clientFrame(op, s&4 != 0 || op.isControl(), p, func(o *frameOpts) {
				binary.LittleEndian.PutUint32(o.key[:], uint32(seed)+uint32(i))
			})...)
		}
		checkChunkingInvariant(t, input, seed)
	})
}

func checkChunkingInvariant(t *testing.T, input []byte, seed uint64) {
	wantEvents, wantCode := parseChunked(t, fuzzMaxMessage, input, oneShot)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	gotEvents, gotCode := parseChunked(t, fuzzMaxMessage, input, func() int { return 1 + rng.IntN(20) })
	if gotCode != wantCode || !reflect.DeepEqual(gotEvents, wantEvents) {
		t.Fatalf("chunked parse differs:\n one-shot %v code %d\n chunked  %v code %d", wantEvents, wantCode, gotEvents, gotCode)
	}
	oneByte, oneByteCode := parseChunked(t, fuzzMaxMessage, input, func() int { return 1 })
	if oneByteCode != wantCode || !reflect.DeepEqual(oneByte, wantEvents) {
		t.Fatalf("byte-at-a-time parse differs:\n one-shot %v code %d\n bytewise %v code %d", wantEvents, wantCode, oneByte, oneByteCode)
	}
}

// FuzzUTF8Validator compares the incremental validator with utf8.Valid under
// random splits.
func FuzzUTF8Validator(f *testing.F) {
	f.Add([]byte("café 🙂"), uint64(1))
	f.Add([]byte("\xed\xa0\x80"), uint64(2))
	f.Fuzz(func(t *testing.T, s []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		var v utf8Validator
		ok := true
		for rest := s; len(rest) > 0 && ok; {
			n := 1 + rng.IntN(len(rest))
			ok = v.write(rest[:n])
			rest = rest[n:]
		}
		if got, want := ok && v.complete(), utf8.Valid(s); got != want {
			t.Fatalf("%q: validator %v, utf8.Valid %v", s, got, want)
		}
	})
}

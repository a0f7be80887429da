package ws

import (
	"bytes"
	"fmt"
	"testing"
)

type countingSink struct{ msgs, bytes int }

func (s *countingSink) onMessage(_ bool, p []byte) { s.msgs++; s.bytes += len(p) }
func (*countingSink) onPing([]byte)                {}
func (*countingSink) onPong([]byte)                {}
func (*countingSink) onClose(int, string)          {}

// BenchmarkParser measures decoding throughput: a stream of masked client
// frames, copied into a 16 KiB read buffer chunk by chunk (as socket reads
// would deliver it) and fed to one parser. Text messages include UTF-8
// validation (json: mostly ASCII, as chat traffic; nonascii: one letter in
// six accented, where utf8.Valid is several times slower); "fragmented"
// splits each message into 4 frames.
func BenchmarkParser(b *testing.B) {
	json := []byte(`{"type":"message","channel":"general","seq":123456,"text":"hello, world; ça va?"}`)
	mixed := []byte("héllo wörld, ")
	for _, tc := range []struct {
		name       string
		op         Opcode
		sample     []byte
		size       int
		fragmented bool
	}{
		{"text-64B-json", OpText, json, 64, false},
		{"text-1KiB-json", OpText, json, 1 << 10, false},
		{"text-1KiB-nonascii", OpText, mixed, 1 << 10, false},
		{"binary-1KiB", OpBinary, json, 1 << 10, false},
		{"text-16KiB-json", OpText, json, 16 << 10, false},
		{"text-16KiB-json-fragmented", OpText, json, 16 << 10, true},
		{"binary-64KiB", OpBinary, json, 64 << 10, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			payload := bytes.Repeat(tc.sample, tc.size/len(tc.sample)+1)[:tc.size]
			for !utf8Complete(payload) {
				payload = payload[:len(payload)-1]
			}
			var stream []byte
			for len(stream) < 1<<20 {
				if tc.fragmented {
					q := len(payload) / 4
					stream = append(stream, clientFrame(tc.op, false, payload[:q])...)
					stream = append(stream, clientFrame(OpContinuation, false, payload[q:2*q])...)
					stream = append(stream, clientFrame(OpContinuation, false, payload[2*q:3*q])...)
					stream = append(stream, clientFrame(OpContinuation, true, payload[3*q:])...)
				} else {
					stream = append(stream, clientFrame(tc.op, true, payload)...)
				}
			}
			buf := make([]byte, readBufferSize)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				p := newParser(1 << 20)
				var sink countingSink
				for rest := stream; len(rest) > 0; {
					n := copy(buf, rest)
					rest = rest[n:]
					if err := p.feed(buf[:n], &sink); err != nil {
						b.Fatal(err)
					}
				}
				if sink.msgs == 0 {
					b.Fatal("no messages")
				}
			}
		})
	}
}

func utf8Complete(p []byte) bool {
	var v utf8Validator
	return v.write(p) && v.complete()
}

func BenchmarkAppendFrame(b *testing.B) {
	payload := make([]byte, 1024)
	dst := make([]byte, 0, 2048)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = AppendFrame(dst[:0], OpText, true, payload)
	}
	_ = fmt.Sprint(len(dst))
}

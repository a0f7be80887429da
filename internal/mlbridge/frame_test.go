package mlbridge_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/mlbridge"
)

func frameBytes(n uint32, body string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, n), body...)
}

func TestReadFrame(t *testing.T) {
	const max = 1024
	t.Run("OK", func(t *testing.T) {
		var buf bytes.Buffer
		if err := mlbridge.WriteFrame(&buf, []byte(`{"a":1}`), max); err != nil {
			t.Fatal(err)
		}
		if got, want := buf.Bytes(), frameBytes(7, `{"a":1}`); !bytes.Equal(got, want) {
			t.Fatalf("wire bytes %q, want %q", got, want)
		}
		body, err := mlbridge.ReadFrame(&buf, max)
		if err != nil || string(body) != `{"a":1}` {
			t.Fatalf("got %q, %v", body, err)
		}
		if _, err := mlbridge.ReadFrame(&buf, max); err != io.EOF {
			t.Fatalf("after the last frame: %v, want io.EOF", err)
		}
	})
	t.Run("LargeBodyGrowsAsItArrives", func(t *testing.T) {
		body := strings.Repeat("x", 200<<10)
		got, err := mlbridge.ReadFrame(bytes.NewReader(frameBytes(uint32(len(body)), body)), 1<<20)
		if err != nil || string(got) != body {
			t.Fatalf("len %d, err %v", len(got), err)
		}
	})
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"ErrEmptyFrame", frameBytes(0, ""), mlbridge.ErrEmptyFrame},
		{"ErrFrameTooLarge", frameBytes(max+1, "x"), mlbridge.ErrFrameTooLarge},
		{"ErrFrameTooLargeHuge", frameBytes(0xFFFFFFFF, ""), mlbridge.ErrFrameTooLarge},
		{"TruncatedHeader", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"TruncatedBody", frameBytes(10, "abc"), io.ErrUnexpectedEOF},
		{"TruncatedLargeBody", frameBytes(900, strings.Repeat("a", 899)), io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mlbridge.ReadFrame(bytes.NewReader(tc.input), max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("TooLargeIsProtocolFault", func(t *testing.T) {
		_, err := mlbridge.ReadFrame(bytes.NewReader(frameBytes(max+1, "")), max)
		if !errors.Is(err, mlbridge.ErrProtocol) {
			t.Fatalf("err %v is not ErrProtocol", err)
		}
	})
}

func TestWriteFrame_Limits(t *testing.T) {
	var buf bytes.Buffer
	if err := mlbridge.WriteFrame(&buf, nil, 10); !errors.Is(err, mlbridge.ErrEmptyFrame) {
		t.Errorf("empty: %v", err)
	}
	if err := mlbridge.WriteFrame(&buf, make([]byte, 11), 10); !errors.Is(err, mlbridge.ErrFrameTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("refused frames wrote %d bytes", buf.Len())
	}
}

func TestDecodeResponse(t *testing.T) {
	ok := []struct {
		name, body string
		want       mlbridge.Response
	}{
		{"Result", `{"result":"ok","request_id":"r1"}`, mlbridge.Response{Result: "ok", RequestID: "r1"}},
		{"Timing", `{"result":"x","request_id":"r1","processing_time_ms":12}`,
			mlbridge.Response{Result: "x", RequestID: "r1", ProcessingTimeMs: 12}},
		{"FractionalTiming", `{"result":"x","request_id":"r1","processing_time_ms":1.7}`,
			mlbridge.Response{Result: "x", RequestID: "r1", ProcessingTimeMs: 1}},
		{"ErrorOnly", `{"request_id":"r1","error":"bad input"}`, mlbridge.Response{RequestID: "r1", Error: "bad input"}},
		{"UnknownFieldsIgnored", `{"result":"","request_id":"r1","extra":[1,2]}`, mlbridge.Response{RequestID: "r1"}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mlbridge.DecodeResponse([]byte(tc.body), "r1")
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	bad := map[string]string{
		"Mismatch":       `{"result":"ok","request_id":"r2"}`,
		"NoID":           `{"result":"ok"}`,
		"IDNotString":    `{"result":"ok","request_id":1}`,
		"ResultNumber":   `{"result":5,"request_id":"r1"}`,
		"NoResult":       `{"request_id":"r1"}`,
		"NotObject":      `[1,2]`,
		"NotJSON":        `\x00garbage`,
		"Truncated":      `{"result":"ok","request_id":"r1"`,
		"TimingString":   `{"result":"","request_id":"r1","processing_time_ms":"5"}`,
		"ErrorNotString": `{"request_id":"r1","error":{}}`,
	}
	for name, body := range bad {
		t.Run("Err"+name, func(t *testing.T) {
			if _, err := mlbridge.DecodeResponse([]byte(body), "r1"); !errors.Is(err, mlbridge.ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		})
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and response
// decoder: they must never panic, never return a body over the limit, and
// frames written by WriteFrame must read back unchanged.
func FuzzReadFrame(f *testing.F) {
	f.Add(frameBytes(2, "{}"), uint16(64))
	f.Add(frameBytes(0, ""), uint16(64))
	f.Add(frameBytes(0xFFFFFFFF, "x"), uint16(64))
	f.Add(frameBytes(5, "ab"), uint16(64))
	f.Add(frameBytes(34, `{"result":"ok","request_id":"r1"}`), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		max := int(limit) + 1
		r := bytes.NewReader(data)
		for {
			body, err := mlbridge.ReadFrame(r, max)
			if err != nil {
				break
			}
			if len(body) == 0 || len(body) > max {
				t.Fatalf("body of %d bytes with limit %d", len(body), max)
			}
			resp, err := mlbridge.DecodeResponse(body, "r1")
			if err == nil && resp.RequestID != "r1" {
				t.Fatalf("accepted a response for %q", resp.RequestID)
			}
		}
		if len(data) > 0 && len(data) <= max {
			var buf bytes.Buffer
			if err := mlbridge.WriteFrame(&buf, data, max); err != nil {
				t.Fatal(err)
			}
			got, err := mlbridge.ReadFrame(&buf, max)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip: %q, %v", got, err)
			}
		}
	})
}

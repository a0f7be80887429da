package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/protocol"
)

func TestDecode(t *testing.T) {
	e, err := protocol.Decode([]byte(` {"type":"send","id":"c1","channel":"ch_1","body":"héllo","extra":{"ignored":true}} `))
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != "send" || e.ID != "c1" || e.Channel != "ch_1" || e.Body != "héllo" {
		t.Fatalf("decoded %+v", e)
	}
	// The seed firmware's heartbeat, byte for byte in shape.
	e, err = protocol.Decode([]byte(`{"type":"heartbeat","device_id":"esp32-01","timestamp":12345,"free_heap":180000}`))
	if err != nil || e.Timestamp == nil || *e.Timestamp != 12345 || *e.FreeHeap != 180000 || e.DeviceID != "esp32-01" {
		t.Fatalf("heartbeat: %+v %v", e, err)
	}
}

func TestDecode_Hostile(t *testing.T) {
	cases := map[string]string{
		"empty":         ``,
		"spaces":        `   `,
		"array":         `[{"type":"send"}]`,
		"string":        `"send"`,
		"null":          `null`,
		"no type":       `{"id":"x"}`,
		"empty type":    `{"type":""}`,
		"type number":   `{"type":5}`,
		"long type":     `{"type":"` + strings.Repeat("t", 33) + `"}`,
		"long id":       `{"type":"send","id":"` + strings.Repeat("i", 65) + `"}`,
		"truncated":     `{"type":"send"`,
		"two objects":   `{"type":"a"}{"type":"b"}`,
		"bad utf8":      "{\"type\":\"send\",\"body\":\"\xff\"}",
		"wrong types":   `{"type":"send","limit":"ten"}`,
		"deep nesting":  `{"type":"send","readings":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`,
		"trailing junk": `{"type":"send"} x`,
	}
	for name, in := range cases {
		if _, err := protocol.Decode([]byte(in)); !errors.Is(err, protocol.ErrDecode) {
			t.Errorf("%s: err = %v, want ErrDecode", name, err)
		}
	}
}

func TestCloseCodes(t *testing.T) {
	for _, c := range []int{protocol.CloseShutdown, protocol.CloseSlowConsumer, protocol.CloseIdleTimeout, protocol.CloseTokenExpired, protocol.CloseGoingAway} {
		if !protocol.Reconnectable(c) {
			t.Errorf("%d must be reconnectable", c)
		}
	}
	for _, c := range []int{protocol.CloseRevoked, protocol.CloseBadCredentials, protocol.CloseKicked, protocol.ClosePolicy} {
		if protocol.Reconnectable(c) {
			t.Errorf("%d must be terminal", c)
		}
	}
	for c := 4000; c <= 4006; c++ {
		if protocol.CloseReason(c) == "" {
			t.Errorf("code %d has no reason", c)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"type":"send","id":"1","channel":"c","body":"b"}`, `{"type":"heartbeat","ts":1,"free_heap":2}`, `{}`, `[`, `{"type":"x","positions":{"a":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := protocol.Decode(data)
		if err != nil {
			if !errors.Is(err, protocol.ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		if e.Type == "" || len(e.Type) > protocol.MaxTypeLen || len(e.ID) > protocol.MaxIDLen {
			t.Fatalf("accepted an invalid envelope: %+v", e)
		}
	})
}

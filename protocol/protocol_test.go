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
	for _, c := range []int{protocol.CloseShutdown, protocol.CloseSlowConsumer, protocol.CloseIdleTimeout, protocol.CloseTokenExpired, protocol.CloseGoingAway, protocol.CloseServiceRestart} {
		if !protocol.Reconnectable(c) {
			t.Errorf("%d must be reconnectable", c)
		}
	}
	for _, c := range []int{protocol.CloseRevoked, protocol.CloseBadCredentials, protocol.CloseKicked, protocol.ClosePolicy} {
		if protocol.Reconnectable(c) {
			t.Errorf("%d must be terminal", c)
		}
	}
	for _, c := range []int{protocol.CloseShutdown, protocol.CloseSlowConsumer, protocol.CloseIdleTimeout,
		protocol.CloseRateLimited, protocol.CloseTokenExpired, protocol.CloseReplaced, protocol.CloseBadCredentials,
		protocol.CloseRevoked, protocol.CloseKicked} {
		if protocol.CloseReason(c) == "" {
			t.Errorf("code %d has no reason", c)
		}
	}
}

// The one mapping: every error code has an HTTP status, the statuses map
// back to a code, and codes that end connections do so with a close code
// of the right range.
func TestErrorCodeMapping(t *testing.T) {
	seen := map[string]bool{}
	for _, code := range protocol.Codes() {
		if seen[code] {
			t.Errorf("code %q listed twice", code)
		}
		seen[code] = true
		st := protocol.HTTPStatus(code)
		if st < 400 || st > 599 {
			t.Errorf("%s: HTTP status %d", code, st)
		}
		if got := protocol.CodeForStatus(st); protocol.HTTPStatus(got) != st {
			t.Errorf("status %d maps back to %q (status %d)", st, got, protocol.HTTPStatus(got))
		}
	}
	for code, want := range map[string]int{protocol.ErrUnauthorized: 4500, protocol.ErrRateLimited: 4004, protocol.ErrInvalid: 0} {
		if got := protocol.CloseCodeOf(code); got != want {
			t.Errorf("CloseCodeOf(%s) = %d, want %d", code, got, want)
		}
	}
	if protocol.HTTPStatus("no_such_code") != 500 || protocol.CodeForStatus(426) != protocol.ErrInvalid || protocol.CodeForStatus(599) != protocol.ErrUnavailable {
		t.Error("fallbacks")
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

package protocol

import (
	"math"
	"strconv"
	"time"
)

// MarshalWelcome encodes a welcome frame exactly as Marshal (encoding/json)
// does, without reflection: it is sent on every connection, and the
// generic encoder was a measurable part of a handshake's CPU. A value the
// hand encoder does not cover byte for byte (a string needing escapes, a
// time encoding/json refuses, a float in exponent form) goes to Marshal.
func MarshalWelcome(w *Welcome) []byte {
	if b, ok := appendWelcome(make([]byte, 0, 512), w); ok {
		return b
	}
	return Marshal(w)
}

func appendWelcome(b []byte, w *Welcome) ([]byte, bool) {
	ok := true
	str := func(key, v string) {
		b = append(b, key...)
		if !plainJSONString(v) {
			ok = false
			return
		}
		b = append(b, '"')
		b = append(b, v...)
		b = append(b, '"')
	}
	num := func(key string, v int) {
		b = append(b, key...)
		b = strconv.AppendInt(b, int64(v), 10)
	}
	tm := func(key string, t time.Time) {
		b = append(b, key...)
		if !plainJSONTime(t) {
			ok = false
			return
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	str(`{"type":`, w.Type)
	str(`,"protocol":`, w.Protocol)
	str(`,"session":`, w.Session)
	str(`,"identity":{"id":`, w.Identity.ID)
	str(`,"name":`, w.Identity.Name)
	str(`,"kind":`, w.Identity.Kind)
	tm(`},"server_time":`, w.ServerTime)
	num(`,"heartbeat_interval":`, w.HeartbeatInterval)
	num(`,"ping_interval":`, w.PingInterval)
	num(`,"idle_timeout":`, w.IdleTimeout)
	if !w.TokenExpiresAt.IsZero() { // omitzero
		tm(`,"token_expires_at":`, w.TokenExpiresAt)
	}
	l := &w.Limits
	num(`,"limits":{"max_frame_bytes":`, l.MaxFrameBytes)
	b = append(b, `,"messages_per_second":`...)
	if f := l.MessagesPerSecond; f != 0 && !(math.Abs(f) >= 1e-6 && math.Abs(f) < 1e21) {
		ok = false // NaN, infinities (refused) and the exponent form
	} else {
		b = strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	num(`,"burst":`, l.Burst)
	for _, f := range [...]struct {
		key string
		v   int
	}{
		{`,"max_body_chars":`, l.MaxMessageBodyRune},
		{`,"command_window":`, l.CommandWindow},
		{`,"max_result_bytes":`, l.MaxResultBytes},
		{`,"max_error_bytes":`, l.MaxErrorBytes},
	} {
		if f.v != 0 { // omitempty
			num(f.key, f.v)
		}
	}
	b = append(b, "}}"...)
	return b, ok
}

// plainJSONString reports whether encoding/json writes s as is between
// quotes: printable ASCII without the characters it escapes (quote,
// backslash, and <, >, & for HTML safety).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// plainJSONTime reports whether time.Time's MarshalJSON accepts t (a
// four-digit year, a zone offset under 24 h), i.e. writes it as
// RFC3339Nano.
func plainJSONTime(t time.Time) bool {
	_, off := t.Zone()
	y := t.Year()
	return y >= 0 && y <= 9999 && off > -24*3600 && off < 24*3600
}

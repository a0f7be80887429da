package protocol_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/unhidra/unhidra/protocol"
)

func sampleWelcome() protocol.Welcome {
	return protocol.Welcome{
		Type: protocol.TypeWelcome, Protocol: protocol.Subprotocol, Session: "sess_1a_x9K2mQ",
		Identity:          protocol.Identity{ID: "usr_01HZX", Name: "alice", Kind: "person"},
		ServerTime:        time.Date(2026, 12, 7, 5, 50, 1, 123456789, time.UTC),
		HeartbeatInterval: 60, PingInterval: 25, IdleTimeout: 60,
		TokenExpiresAt: time.Date(2026, 12, 7, 6, 5, 1, 0, time.UTC),
		Limits:         protocol.Limits{MaxFrameBytes: 65536, MessagesPerSecond: 20, Burst: 40},
	}
}

// MarshalWelcome writes what encoding/json writes, for the values it
// encodes itself and for those it hands over.
func TestMarshalWelcome_AgreesWithJSON(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	cases := map[string]func(w *protocol.Welcome){
		"sample":           func(*protocol.Welcome) {},
		"no expiry":        func(w *protocol.Welcome) { w.TokenExpiresAt = time.Time{} },
		"zero server time": func(w *protocol.Welcome) { w.ServerTime = time.Time{} },
		"local zone":       func(w *protocol.Welcome) { w.ServerTime = w.ServerTime.In(berlin) },
		"negative zone": func(w *protocol.Welcome) {
			w.TokenExpiresAt = w.TokenExpiresAt.In(time.FixedZone("X", -(9*3600 + 30*60)))
		},
		"zone with seconds": func(w *protocol.Welcome) { w.ServerTime = w.ServerTime.In(time.FixedZone("LMT", 3600+17)) },
		"zone of 23:59":     func(w *protocol.Welcome) { w.ServerTime = w.ServerTime.In(time.FixedZone("Z", 24*3600-1)) },
		"year 0":            func(w *protocol.Welcome) { w.TokenExpiresAt = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) },
		"device": func(w *protocol.Welcome) {
			w.Identity.Kind = "device"
			w.Limits.CommandWindow = 8
			w.Limits.MaxResultBytes = 4096
			w.Limits.MaxErrorBytes = 512
		},
		"body limit":         func(w *protocol.Welcome) { w.Limits.MaxMessageBodyRune = 4000 },
		"negative ints":      func(w *protocol.Welcome) { w.PingInterval = -1; w.Limits.Burst = math.MinInt64 },
		"fraction rate":      func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 0.5 },
		"long rate":          func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 1.0 / 3 },
		"zero rate":          func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 0 },
		"negative rate":      func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = -2.25 },
		"tiny rate":          func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 1e-7 },
		"edge small rate":    func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 1e-6 },
		"huge rate":          func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 1e21 },
		"below huge rate":    func(w *protocol.Welcome) { w.Limits.MessagesPerSecond = 9.99e20 },
		"unicode name":       func(w *protocol.Welcome) { w.Identity.Name = "Zoë 日本" },
		"html name":          func(w *protocol.Welcome) { w.Identity.Name = "<b>&amp;</b>" },
		"quote and slash":    func(w *protocol.Welcome) { w.Identity.Name = `a"b\c/d` },
		"control character":  func(w *protocol.Welcome) { w.Session = "a\tb\x00c\x7f" },
		"invalid utf-8":      func(w *protocol.Welcome) { w.Identity.ID = "a\xffb" },
		"line separator":     func(w *protocol.Welcome) { w.Identity.Name = "a\u2028b" },
		"empty strings":      func(w *protocol.Welcome) { *w = protocol.Welcome{} },
		"printable ascii":    func(w *protocol.Welcome) { w.Identity.Name = " !#$%'()*+,-.0123456789:;=?@AZ[]^_`az{|}~" },
		"nanoseconds zeroes": func(w *protocol.Welcome) { w.ServerTime = time.Date(2026, 1, 2, 3, 4, 5, 100, time.UTC) },
	}
	for name, edit := range cases {
		w := sampleWelcome()
		edit(&w)
		want, err := json.Marshal(w)
		if err != nil {
			t.Fatalf("%s: encoding/json: %v", name, err)
		}
		if got := protocol.MarshalWelcome(&w); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func FuzzMarshalWelcome(f *testing.F) {
	f.Add("alice", "sess_1", int64(1796615401), int64(0), 20.0, 40, 0)
	f.Add("Zoë <x>", "s\"", int64(-62135596800), int64(1), 1e-7, -1, 3600)
	f.Fuzz(func(t *testing.T, name, session string, sec, nsec int64, rate float64, burst, zone int) {
		if math.IsNaN(rate) || math.IsInf(rate, 0) {
			return // refused by encoding/json: Marshal panics on it by design
		}
		w := sampleWelcome()
		w.Identity.Name, w.Session = name, session
		w.ServerTime = time.Unix(sec, nsec).In(time.FixedZone("F", zone%(48*3600)))
		w.Limits.MessagesPerSecond, w.Limits.Burst = rate, burst
		want, err := json.Marshal(w)
		if err != nil {
			return // a time encoding/json refuses: Marshal panics on it by design
		}
		if got := protocol.MarshalWelcome(&w); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkMarshalWelcome(b *testing.B) {
	w := sampleWelcome()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = protocol.Marshal(w)
		}
	})
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = protocol.MarshalWelcome(&w)
		}
	})
}

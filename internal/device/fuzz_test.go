package device

import (
	"encoding/json"
	"testing"

	"github.com/unhidra/unhidra/protocol"
)

// FuzzDeviceFrames feeds arbitrary frames through the envelope decoder and
// the heartbeat and readings validation: nothing may panic, and whatever
// is accepted must be within the documented bounds.
func FuzzDeviceFrames(f *testing.F) {
	f.Add([]byte(`{"type":"heartbeat","device_id":"dev_x","ts":3600,"free_heap":123456}`))
	f.Add([]byte(`{"type":"heartbeat","device_id":"dev_x","timestamp":1e9,"free_heap":0}`))
	f.Add([]byte(`{"type":"telemetry","readings":{"t":21.5,"s":"on","b":true}}`))
	f.Add([]byte(`{"type":"telemetry","readings":{"a":{"b":[1,2]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := protocol.Decode(data)
		if err != nil {
			return
		}
		if hb, err := parseHeartbeat("dev_x", e); err == nil {
			if hb.Uptime < 0 || hb.Uptime > MaxUptime || hb.FreeHeap < 0 || hb.FreeHeap > MaxFreeHeap || hb.Uptime != hb.Uptime {
				t.Fatalf("accepted out-of-range heartbeat %+v", hb)
			}
		}
		if r, err := parseReadings(e.Readings); err == nil {
			var m map[string]any
			if len(r) > MaxReadingsBytes || json.Unmarshal(r, &m) != nil || len(m) == 0 || len(m) > MaxReadings {
				t.Fatalf("accepted readings %q", r)
			}
		}
	})
}

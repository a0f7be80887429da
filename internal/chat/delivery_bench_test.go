package chat

import (
	"testing"

	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ws"
)

type benchClient struct{ id uint64 }

func (c benchClient) ConnID() uint64                 { return c.id }
func (c benchClient) Identity() string               { return "usr_bench" }
func (c benchClient) Send(*ws.PreparedMessage) error { return nil }
func (c benchClient) Close(int)                      {}

// BenchmarkDelivery measures what the per-node sequencer adds per message
// and node over handing the frame straight to the hub: in order (the common
// case), and with every other frame arriving ahead of its predecessor.
func BenchmarkDelivery(b *testing.B) {
	frame := []byte(`{"type":"message","channel":"chn_bench","seq":1,"message_id":"msg_x","from":"usr_x","from_name":"ann","body":"` +
		string(make([]byte, 120)) + `","ts":"2026-12-07T00:00:00Z"}`)
	setup := func() (*Service, *delivery) {
		s := &Service{hub: hub.New()}
		d := newDelivery(s, 0)
		d.follow("chn_bench", 0)
		for i := range 100 {
			s.hub.Subscribe(topic("chn_bench"), benchClient{uint64(i + 1)})
		}
		return s, d
	}
	b.Run("direct", func(b *testing.B) {
		s, _ := setup()
		b.ReportAllocs()
		for b.Loop() {
			s.hub.Publish(topic("chn_bench"), ws.NewPreparedMessage(true, frame))
		}
	})
	b.Run("sequenced", func(b *testing.B) {
		_, d := setup()
		b.ReportAllocs()
		seq := int64(0)
		for b.Loop() {
			seq++
			d.onFrame(topic("chn_bench"), encodeSequenced(seq, frame))
		}
	})
	b.Run("sequenced_reordered", func(b *testing.B) {
		_, d := setup()
		d.gapWait = 1 << 40 // the gap always closes by itself here
		b.ReportAllocs()
		seq := int64(0)
		for b.Loop() {
			seq++
			s := seq
			if s%2 == 1 {
				s++ // 2 before 1, 4 before 3, …
			} else {
				s--
			}
			d.onFrame(topic("chn_bench"), encodeSequenced(s, frame))
		}
	})
}

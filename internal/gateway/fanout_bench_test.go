package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/loadtest"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/ws"
)

// BenchmarkFanout publishes to one topic with 1,000 subscribers, each a
// real WebSocket client over TLS in this process, and reports deliveries
// per second and the publish-to-receive latency. The publisher stays at
// most `window` messages ahead of the slowest reader, so queues stay
// bounded and the figure is a sustainable rate, not a burst into buffers.
// Clients share the machine's cores with the server.
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) { benchFanout(b, subs, 8) })
	}
}

func benchFanout(b *testing.B, subs, window int) {
	s := newStack(b, gateway.Config{Admission: gateway.AdmissionLimits{MaxConnsPerIdent: subs + 10,
		ConnRatePerIdent: ratelimit.Limit{Burst: subs + 10, Every: time.Millisecond},
		ConnRatePerIP:    ratelimit.Limit{Burst: subs + 10, Every: time.Millisecond}},
		Transport: ws.Config{PingInterval: time.Minute, IdleTimeout: 10 * time.Minute}})
	token, _ := s.newUser(b)
	conns := make([]*websocket.Conn, subs)
	for i := range conns {
		conns[i] = s.mustDial(b, token).conn
		writeJSON(b, conns[i], map[string]string{"type": "test.subscribe", "id": "s", "channel": "t"})
		if f, err := readFrame(b, conns[i], 10*time.Second); err != nil || f["type"] != "ack" {
			b.Fatalf("subscribe: %v %v", f, err)
		}
	}
	var received atomic.Int64
	lat := make([][]time.Duration, subs)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	minSeen := make([]atomic.Int64, subs)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				var m struct {
					Seq int64 `json:"seq"`
					TS  int64 `json:"ts"`
				}
				json.Unmarshal(data, &m)
				lat[i] = append(lat[i], time.Duration(time.Now().UnixNano()-m.TS))
				minSeen[i].Store(m.Seq)
				received.Add(1)
			}
		}()
	}
	slowest := func() int64 {
		m := int64(1 << 62)
		for i := range minSeen {
			m = min(m, minSeen[i].Load())
		}
		return m
	}
	b.ResetTimer()
	start := time.Now()
	seq := int64(0)
	for b.Loop() {
		seq++
		for seq-slowest() > int64(window) {
			time.Sleep(50 * time.Microsecond)
		}
		payload := `{"type":"message","seq":` + strconv.FormatInt(seq, 10) + `,"ts":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"body":"hello, fan-out"}`
		s.gw.Hub().Publish("t", ws.NewPreparedMessage(true, []byte(payload)))
	}
	for slowest() < seq {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	p := loadtest.Percentiles(all, 50, 99)
	b.ReportMetric(float64(received.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(p[0].Microseconds()), "p50-µs")
	b.ReportMetric(float64(p[1].Microseconds()), "p99-µs")
	cancel()
	for _, c := range conns {
		c.CloseNow()
	}
	wg.Wait()
}

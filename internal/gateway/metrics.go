package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/ws"
)

// Metrics are the gateway's Prometheus collectors.
type Metrics struct {
	connsFunc    func() map[string]int
	connsDesc    *prometheus.Desc
	upgrades     prometheus.Counter
	refusals     *prometheus.CounterVec
	handshake    prometheus.Histogram
	badFrames    prometheus.Counter
	rateLimited  prometheus.Counter
	drops        *prometheus.CounterVec
	closes       *prometheus.CounterVec
	pingTimeouts prometheus.Counter

	// Traffic per direction, live: the totals of closed connections plus
	// the counters of the live ones (liveFunc), summed at scrape time.
	liveFunc    func() ws.Stats
	writesFunc  func() uint64 // socket writes so far (ws.Engine.FlushStats)
	writesDesc  *prometheus.Desc
	queuedDesc  [2]*prometheus.Desc // frames, bytes queued for live connections
	trafficDesc [4]*prometheus.Desc // frames in, frames out, bytes in, bytes out
	closed      [4]atomic.Uint64
	trafficMu   sync.Mutex
	reported    [4]float64 // high-water marks: a counter never goes back
}

// Indexes of the traffic counters.
const (
	framesIn = iota
	framesOut
	bytesIn
	bytesOut
)

func newMetrics() *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "gateway", Name: name, Help: help})
	}
	m := &Metrics{
		connsDesc: prometheus.NewDesc("unhidra_gateway_connections", "Live WebSocket connections by identity kind.", []string{"kind"}, nil),
		upgrades:  c("upgrades_total", "Handshakes accepted and upgraded."),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "gateway",
			Name: "refusals_total", Help: "Handshakes refused before the upgrade, by reason."}, []string{"reason"}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "unhidra", Subsystem: "gateway",
			Name: "handshake_seconds", Help: "Time from request to upgraded connection.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}}),
		trafficDesc: [4]*prometheus.Desc{
			prometheus.NewDesc("unhidra_gateway_frames_received_total", "Data frames (messages) received from clients, live connections included.", nil, nil),
			prometheus.NewDesc("unhidra_gateway_frames_sent_total", "Data frames (messages) written to clients, live connections included.", nil, nil),
			prometheus.NewDesc("unhidra_gateway_received_bytes_total", "WebSocket bytes received, live connections included.", nil, nil),
			prometheus.NewDesc("unhidra_gateway_sent_bytes_total", "WebSocket bytes sent, live connections included.", nil, nil),
		},
		queuedDesc: [2]*prometheus.Desc{
			prometheus.NewDesc("unhidra_gateway_queued_frames", "Frames queued for live connections and not yet written to their sockets: the server's side of the delivery backlog.", nil, nil),
			prometheus.NewDesc("unhidra_gateway_queued_bytes", "Bytes of the frames in unhidra_gateway_queued_frames.", nil, nil),
		},
		writesDesc: prometheus.NewDesc("unhidra_gateway_socket_writes_total",
			"Socket writes that carried frames; frames_sent_total over this is how many frames a write carries.", nil, nil),
		badFrames:   c("bad_frames_total", "Frames that were not valid protocol envelopes."),
		rateLimited: c("rate_limited_frames_total", "Frames refused by the per-connection rate limit."),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "gateway",
			Name: "drops_total", Help: "Frames that could not be queued for a connection (which was then closed with 4001), by reason: queue_full, too_large."},
			[]string{"reason"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "gateway",
			Name: "closes_total", Help: "Connections ended, by cause (slow_consumer, client, idle_timeout, write_error, shutdown, …)."},
			[]string{"reason"}),
		pingTimeouts: c("ping_timeouts_total", "Connections closed for silence past the idle timeout."),
	}
	for _, reason := range []string{"queue_full", "too_large"} {
		m.drops.WithLabelValues(reason) // exported at 0, for dashboards and alerts
	}
	for _, reason := range []string{"slow_consumer", "client", "idle_timeout"} {
		m.closes.WithLabelValues(reason)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.connsDesc
	for _, d := range m.trafficDesc {
		ch <- d
	}
	ch <- m.writesDesc
	ch <- m.queuedDesc[0]
	ch <- m.queuedDesc[1]
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.connsFunc != nil {
		for kind, n := range m.connsFunc() {
			ch <- prometheus.MustNewConstMetric(m.connsDesc, prometheus.GaugeValue, float64(n), kind)
		}
	}
	var live ws.Stats
	if m.liveFunc != nil {
		live = m.liveFunc()
	}
	for i, v := range m.traffic(live) {
		ch <- prometheus.MustNewConstMetric(m.trafficDesc[i], prometheus.CounterValue, v)
	}
	ch <- prometheus.MustNewConstMetric(m.queuedDesc[0], prometheus.GaugeValue, float64(live.QueuedMsgs))
	ch <- prometheus.MustNewConstMetric(m.queuedDesc[1], prometheus.GaugeValue, float64(live.QueuedBytes))
	if m.writesFunc != nil {
		ch <- prometheus.MustNewConstMetric(m.writesDesc, prometheus.CounterValue, float64(m.writesFunc()))
	}
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.upgrades, m.refusals, m.handshake, m.badFrames, m.rateLimited, m.drops,
		m.closes, m.pingTimeouts}
}

// traffic returns the traffic counters now: closed connections' totals
// plus the live connections' counters (live). A connection closing during
// the scrape may be counted twice for a moment; the high-water marks keep
// the counters from ever going back.
func (m *Metrics) traffic(live ws.Stats) [4]float64 {
	now := [4]float64{
		float64(m.closed[framesIn].Load() + live.MessagesIn),
		float64(m.closed[framesOut].Load() + live.MessagesOut),
		float64(m.closed[bytesIn].Load() + live.BytesIn),
		float64(m.closed[bytesOut].Load() + live.BytesOut),
	}
	m.trafficMu.Lock()
	defer m.trafficMu.Unlock()
	for i := range now {
		m.reported[i] = max(m.reported[i], now[i])
	}
	return m.reported
}

// addClosed adds a closed connection's traffic to the totals.
func (m *Metrics) addClosed(st ws.Stats) {
	m.closed[framesIn].Add(st.MessagesIn)
	m.closed[framesOut].Add(st.MessagesOut)
	m.closed[bytesIn].Add(st.BytesIn)
	m.closed[bytesOut].Add(st.BytesOut)
}

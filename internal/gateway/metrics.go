package gateway

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the gateway's Prometheus collectors.
type Metrics struct {
	connsFunc    func() map[string]int
	connsDesc    *prometheus.Desc
	upgrades     prometheus.Counter
	refusals     *prometheus.CounterVec
	handshake    prometheus.Histogram
	framesIn     prometheus.Counter
	framesOut    prometheus.Counter
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
	badFrames    prometheus.Counter
	rateLimited  prometheus.Counter
	drops        *prometheus.CounterVec
	closes       *prometheus.CounterVec
	pingTimeouts prometheus.Counter
}

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
		framesIn:    c("frames_received_total", "Data frames received from clients."),
		framesOut:   c("frames_sent_total", "Data frames written to clients (counted when connections close)."),
		bytesIn:     c("received_bytes_total", "WebSocket bytes received (counted when connections close)."),
		bytesOut:    c("sent_bytes_total", "WebSocket bytes sent (counted when connections close)."),
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
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.upgrades, m.refusals, m.handshake, m.framesIn, m.framesOut, m.bytesIn,
		m.bytesOut, m.badFrames, m.rateLimited, m.drops, m.closes, m.pingTimeouts}
}

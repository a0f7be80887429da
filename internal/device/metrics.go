package device

import "github.com/prometheus/client_golang/prometheus"

// Metrics returns the service's Prometheus collectors, read from Stats at
// scrape time.
func (s *Service) Metrics() prometheus.Collector { return metrics{s} }

type metrics struct{ s *Service }

var (
	descDevices = prometheus.NewDesc("unhidra_devices_connected", "Connected devices by state.", []string{"state"}, nil)
	descDropped = prometheus.NewDesc("unhidra_devices_telemetry_dropped_total",
		"Telemetry frames dropped because the pending batch was full.", nil, nil)
	descFlushFail = prometheus.NewDesc("unhidra_devices_flush_failures_total",
		"Batched device writes that failed (and were retried).", nil, nil)
)

// Describe implements prometheus.Collector.
func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDevices
	ch <- descDropped
	ch <- descFlushFail
}

// Collect implements prometheus.Collector.
func (m metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(st.Online), StateOnline)
	ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(st.Stale), StateStale)
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.DroppedTelemetry))
	ch <- prometheus.MustNewConstMetric(descFlushFail, prometheus.CounterValue, float64(st.FlushFailures))
}

package chat

import "github.com/prometheus/client_golang/prometheus"

// metrics are the messaging service's Prometheus collectors.
type metrics struct {
	sendTimeouts  prometheus.Counter
	storeFailures prometheus.Counter
	funcs         []prometheus.Collector
}

func newMetrics(s *Service) *metrics {
	counter := func(sub, name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		sendTimeouts:  counter("chat", "send_timeouts_total", "Sends answered unavailable because the store did not answer within the send timeout."),
		storeFailures: counter("chat", "store_failures_total", "Failed commits and store reads of the messaging service (timeouts included)."),
	}
	fn := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "bus", Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	d := func() *deliveryMetrics { return &s.delivery.m }
	m.funcs = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "unhidra", Subsystem: "chat", Name: "store_up",
			Help: "0 while the messaging service's store fails (from the first failure to the next success), else 1."},
			func() float64 {
				if s.storeDown.Load() != 0 {
					return 0
				}
				return 1
			}),
		fn("out_of_order_holds_total", "Message frames that arrived ahead of the next seq and were held.", func() uint64 { return d().holds.Load() }),
		fn("duplicates_dropped_total", "Message frames dropped because their seq was delivered already.", func() uint64 { return d().dups.Load() }),
		fn("gap_fills_total", "Reads of missing messages from the store (after a gap outlived the gap wait, or a bus reconnect).", func() uint64 { return d().fills.Load() }),
		fn("gap_fill_messages_total", "Messages delivered from the store instead of the bus.", func() uint64 { return d().filled.Load() }),
		fn("store_syncs_total", "Passes that brought every followed conversation (or those a pass left) up to date from the store: "+
			"after a reconnect or a slow-consumer drop, every second of an outage, and every second while conversations are left.",
			func() uint64 { return d().syncs.Load() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "unhidra", Subsystem: "bus", Name: "store_sync_unfinished",
			Help: "Conversations the last store sync could not read (a database error); they are tried again every second."},
			func() float64 { return float64(d().unfinished.Load()) }),
	}
	return m
}

// Collectors returns the service's Prometheus collectors.
func (s *Service) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{s.metrics.sendTimeouts, s.metrics.storeFailures}, s.metrics.funcs...)
}

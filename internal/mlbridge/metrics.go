package mlbridge

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	restarts prometheus.Counter
	gauges   []prometheus.Collector
}

func newMetrics(s *Supervisor) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_ml_calls_total",
			Help: "ML calls by model and outcome (ok, model_error, timeout, crashed, protocol, saturated, canceled, closed, invalid, error).",
		}, []string{"model", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "unhidra_ml_call_duration_seconds",
			Help:    "ML call latency including queueing, by model.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"model"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_ml_worker_restarts_total",
			Help: "ML worker processes restarted after a crash or failed health checks.",
		}),
	}
	sum := func(f func(w *worker) int) func() float64 {
		return func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, w := range s.workers {
				n += f(w)
			}
			return float64(n)
		}
	}
	m.gauges = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "unhidra_ml_in_flight",
			Help: "ML requests currently on a worker connection.",
		}, sum(func(w *worker) int { return w.inflight })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "unhidra_ml_workers_ready",
			Help: "ML worker processes ready to serve.",
		}, sum(func(w *worker) int {
			if w.state == StateReady {
				return 1
			}
			return 0
		})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "unhidra_ml_queue_depth",
			Help: "ML calls waiting for a free worker connection.",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.waiters))
		}),
	}
	return m
}

func (m *metrics) observe(model string, err error, took time.Duration) {
	m.calls.WithLabelValues(model, outcome(err)).Inc()
	m.latency.WithLabelValues(model).Observe(took.Seconds())
}

// outcome names an error for the calls counter.
func outcome(err error) string {
	var me *ModelError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &me):
		return "model_error"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrSaturated):
		return "saturated"
	case errors.Is(err, ErrWorkerCrashed):
		return "crashed"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrTooLarge):
		return "invalid"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// Collectors returns the supervisor's Prometheus collectors for the caller
// to register: calls by model and outcome, call latency, restarts, requests
// in flight, ready workers and queue depth.
func (s *Supervisor) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{s.metrics.calls, s.metrics.latency, s.metrics.restarts}, s.metrics.gauges...)
}

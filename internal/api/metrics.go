package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// metrics are the API's own Prometheus series.
type metrics struct {
	logins *prometheus.CounterVec
}

// loginResults are the values of the result label, all exported from the
// start so that dashboards and alerts find them at zero.
var loginResults = []string{"ok", "bad_credentials", "locked", "rate_limited", "invalid", "error"}

func newMetrics() *metrics {
	m := &metrics{logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "api",
		Name: "logins_total", Help: "Password logins by result (bad_credentials: wrong name or password)."}, []string{"result"})}
	for _, r := range loginResults {
		m.logins.WithLabelValues(r)
	}
	return m
}

// login counts one login attempt by its error (nil: success).
func (m *metrics) login(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		switch unhidra.ErrorCode(err) {
		case protocol.ErrUnauthorized:
			result = "bad_credentials"
		case protocol.ErrAccountLocked:
			result = "locked"
		case protocol.ErrRateLimited:
			result = "rate_limited"
		case protocol.ErrInvalid:
			result = "invalid"
		default:
			result = "error"
		}
	}
	m.logins.WithLabelValues(result).Inc()
}

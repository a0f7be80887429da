package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Deps are the server's dependencies. Nil optional fields turn their
// routes off.
type Deps struct {
	Log      *slog.Logger
	Accounts *auth.Service
	Store    store.Store
	// Ready reports whether the node should receive traffic (false while
	// draining); nil means always ready once the store answers.
	Ready func() bool
	// Metrics serves /metrics (optional). It is open to loopback clients
	// and administrators only.
	Metrics http.Handler
	// TrustedProxies may set X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// TLS reports whether the listener is HTTPS (for HSTS).
	TLS bool
	// ML serves inference (optional).
	ML ML
	// MLPerUser bounds one user's inference calls in flight (default 2);
	// more wait in that user's own queue, so one user cannot hold every
	// worker while others wait.
	MLPerUser int
	// MLRate bounds each user's inference requests (zero: a burst of 20,
	// then 5 a second).
	MLRate ratelimit.Limit
	// Mount lets other parts of the server add their routes to the mux
	// (gateway, messaging, devices, ML, web UI).
	Mount []func(mux *http.ServeMux, h Helpers)
	// Registerer, when set, receives the API's metrics (logins by result).
	Registerer prometheus.Registerer

	metrics *metrics
}

// Helpers give mounted route sets the API's conventions (see httpx).
type Helpers = httpx.Helpers

// Decode reads a strict JSON body into a T (see decode).
func Decode[T any](w http.ResponseWriter, r *http.Request) (T, error) { return decode[T](w, r) }

// DecodeValid reads a strict JSON body into a T and validates it.
func DecodeValid[T Validator](w http.ResponseWriter, r *http.Request) (T, error) {
	return decodeValid[T](w, r)
}

// NewServer builds the whole HTTP surface.
func NewServer(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	d.metrics = newMetrics()
	if d.Registerer != nil {
		d.Registerer.MustRegister(d.metrics.logins)
	}
	mux := http.NewServeMux()
	addRoutes(mux, d)
	return chain(mux, httpx.RequestIDs(), logRequests(d.Log, d.TrustedProxies), securityHeaders(d.TLS))
}

func (d Deps) helpers() Helpers {
	return Helpers{
		Log:          d.Log,
		RequireUser:  requireUser(d.Log, d.Accounts),
		RequireAdmin: func(h http.Handler) http.Handler { return requireUser(d.Log, d.Accounts)(requireAdmin(d.Log)(h)) },
		ClientIP:     func(r *http.Request) string { return ClientIP(r, d.TrustedProxies) },
	}
}

func (d Deps) request(r *http.Request) auth.Request {
	return auth.Request{IP: ClientIP(r, d.TrustedProxies), UserAgent: r.UserAgent()}
}

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func handleReadyz(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Ready != nil && !d.Ready() {
			httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrUnavailable, "Draining."))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2e9)
		defer cancel()
		if err := d.Store.Ping(ctx); err != nil {
			d.Log.Warn("readiness: store unreachable", "err", err)
			httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrUnavailable, "Store unavailable."))
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

func handleJWKS(accounts *auth.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(accounts.Tokens().Keys.JWKS())
	})
}

// handleMetrics serves the metrics to administrators and to requests made
// directly from this machine (a loopback peer, no forwarding header).
func handleMetrics(d Deps) http.Handler {
	admin := d.helpers().RequireAdmin(d.Metrics)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if DirectLoopback(r) {
			d.Metrics.ServeHTTP(w, r)
			return
		}
		admin.ServeHTTP(w, r)
	})
}

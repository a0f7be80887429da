package api

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/protocol"
)

// Middleware wraps a handler.
type Middleware = httpx.Middleware

// statusRecorder remembers the status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Hijack for the WebSocket upgrade.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs each request's method, path (never the query string:
// it might carry a secret someone put there), status and duration, and
// turns panics into 500s.
func logRequests(log *slog.Logger, trusted []netip.Prefix) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w}
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "request_id", httpx.RequestID(r.Context()))
					if rec.status == 0 {
						httpx.WriteError(rec, r, log, unhidra.Errorf(protocol.ErrInternal, "Internal error."))
					}
				}
				// Checked first: the arguments (the client's address among
				// them) cost allocations on every request, WebSocket
				// handshakes included, at the usual level that drops them.
				if log.Enabled(r.Context(), slog.LevelDebug) {
					log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
						"duration", time.Since(start), "ip", ClientIP(r, trusted), "request_id", httpx.RequestID(r.Context()))
				}
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// securityHeaders sets headers every response should carry.
func securityHeaders(tls bool) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			if tls {
				h.Set("Strict-Transport-Security", "max-age=31536000")
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearerToken extracts the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// requireUser authenticates the bearer token and puts the user in the
// request context.
func requireUser(log *slog.Logger, accounts *auth.Service) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if httpx.TokenInQuery(r) {
				httpx.WriteError(w, r, log, unhidra.Errorf(protocol.ErrInvalid, "Credentials are not accepted in the URL; use the Authorization header."))
				return
			}
			tok, ok := bearerToken(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="unhidra"`)
				httpx.WriteError(w, r, log, unhidra.Errorf(protocol.ErrUnauthorized, "Authentication required."))
				return
			}
			u, err := accounts.Authenticate(r.Context(), tok)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="unhidra", error="invalid_token"`)
				httpx.WriteError(w, r, log, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), u)))
		})
	}
}

// requireAdmin lets only administrators through; it runs after requireUser.
func requireAdmin(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !auth.UserFromContext(r.Context()).IsAdmin() {
				httpx.WriteError(w, r, log, unhidra.Errorf(protocol.ErrForbidden, "Administrators only."))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// chain applies middleware so that the first listed runs first.
func chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Package httpx holds the HTTP conventions every HTTP surface of the server
// shares (the REST API, the gateway's routes, the domains' REST adapters):
// JSON answers, the error body with its status from the protocol's one
// mapping, request ids, and the Helpers that mounted route sets receive.
package httpx

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Helpers give mounted route sets the API's conventions, so every endpoint
// authenticates, decodes and reports errors the same way. The REST API
// (api.Deps) builds them.
type Helpers struct {
	Log          *slog.Logger
	RequireUser  Middleware
	RequireAdmin Middleware
	ClientIP     func(*http.Request) string
}

// Error writes err as the API's JSON error response.
func (h Helpers) Error(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, h.Log, err)
}

// JSON writes v with the status.
func (h Helpers) JSON(w http.ResponseWriter, status int, v any) { JSON(w, status, v) }

// credentialKeys are query parameters that look like credentials.
var credentialKeys = []string{"token", "access_token", "jwt", "api_key", "apikey", "key", "auth", "bearer"}

// TokenInQuery reports whether the URL carries something that looks like a
// credential. Such requests are refused outright, so tokens never end up
// in URLs, proxies' logs or browser history.
func TokenInQuery(r *http.Request) bool { return credentialInQuery(r.URL.Query()) }

func credentialInQuery(q url.Values) bool {
	for _, k := range credentialKeys {
		if q.Has(k) {
			return true
		}
	}
	return false
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// JSON writes v as JSON with the status. Headers are set before
// WriteHeader, or they would be lost.
func JSON(w http.ResponseWriter, status int, v any) {
	jsonHeaders(w)
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}

// JSONNow is JSON sent at once: with its length, and flushed, so that the
// client has it before the work that follows a handler (the access log,
// net/http's end of request) runs. Without a length, a flush before the
// handler returns would make net/http send the body chunked. The bytes are
// JSON's. An error means v could not be encoded and nothing was written.
func JSONNow(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	body = append(body, '\n') // as json.Encoder writes it
	jsonHeaders(w)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		return nil // the client went away
	}
	_ = http.NewResponseController(w).Flush() // errors: as Write's
	return nil
}

func jsonHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
}

// WriteError writes err as a JSON error. Internal errors are logged with
// their cause and shown to the client only as "Internal error.".
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := unhidra.ErrorCode(err)
	status := protocol.HTTPStatus(code)
	if status >= 500 && code != protocol.ErrUnavailable && code != protocol.ErrTimeout && code != protocol.ErrUpstream {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err, "request_id", RequestID(r.Context()))
	}
	if retry := unhidra.RetryAfter(err); retry > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(retry, 10))
	} else if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	var body errorBody
	body.Error.Code = code
	body.Error.Message = unhidra.ErrorMessage(err)
	JSON(w, status, body)
}

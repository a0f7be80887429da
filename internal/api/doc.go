// Package api is Unhidra's HTTP API: JSON over HTTPS under /api/v1, plus
// the health, readiness, JWKS and metrics endpoints. routes.go lists every
// route; handlers are makers that take their dependencies and return an
// http.Handler; encode.go decodes and encodes JSON in one place; errors are
// mapped from store error codes to statuses in one table.
package api

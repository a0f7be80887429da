package store

import (
	"errors"
	"fmt"
)

// Application error codes. They are transport-neutral: internal/api maps them
// to HTTP statuses in one table, the gateway maps them to error frames.
const (
	EINVALID        = "invalid"        // the input is malformed or breaks a rule
	EUNAUTHORIZED   = "unauthorized"   // no or bad credentials
	EFORBIDDEN      = "forbidden"      // authenticated, but not allowed
	ENOTFOUND       = "not_found"      // no such entity (or not visible to the caller)
	ECONFLICT       = "conflict"       // the entity exists already, or changed under us
	ETOOLARGE       = "too_large"      // the input exceeds a size limit
	ERATELIMIT      = "rate_limited"   // too many attempts; retry later
	EUNAVAILABLE    = "unavailable"    // overloaded or shutting down; retry later
	EINTERNAL       = "internal"       // a bug or an infrastructure failure
	EUNSUPPORTED    = "unsupported"    // e.g. wrong content type
	ELOCKED         = "account_locked" // too many failures; the account waits
	EUNPROCESSABLE  = "unprocessable"  // well-formed, but the processor rejected it (e.g. a model's input)
	EUPSTREAM       = "upstream"       // a component we depend on failed (e.g. an ML worker crashed)
	ETIMEOUT        = "timeout"        // a component we depend on did not answer in time
	ENOTIMPLEMENTED = "not_implemented"
)

// Error is an application error: a code from the list above and a message
// that is safe to show to the client. Causes that must not reach the client
// are wrapped in Err and only logged.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when positive, tells the client how long to wait
	// (ERATELIMIT, EUNAVAILABLE, ELOCKED).
	RetryAfter int64 // seconds
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an application error with a formatted client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the application error in err's chain, or
// EINTERNAL when there is none (nil gives "").
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the application
// error's message, or "Internal error." for anything else.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// RetryAfter returns the retry hint in seconds carried by err, or 0.
func RetryAfter(err error) int64 {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

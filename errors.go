package unhidra

import (
	"errors"
	"fmt"

	"github.com/unhidra/unhidra/protocol"
)

// Error is an application error: an error code of package protocol and a message
// that is safe to show to the client. Causes that must not reach the client
// are wrapped in Err and only logged.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when positive, tells the client how long to wait
	// (protocol.ErrRateLimited, protocol.ErrUnavailable, protocol.ErrAccountLocked).
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
// protocol.ErrInternal when there is none (nil gives "").
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return protocol.ErrInternal
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

package mlbridge

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by the Supervisor. Each wraps more detail; test for them
// with errors.Is. The HTTP status in brackets is the mapping the API uses.
var (
	// ErrSaturated: every connection is busy and the wait queue is full. [503]
	ErrSaturated = errors.New("mlbridge: saturated: all workers busy and the queue is full")
	// ErrTimeout: the call's deadline passed while queued or in flight. It
	// also matches context.DeadlineExceeded. [504]
	ErrTimeout = errors.New("mlbridge: timeout")
	// ErrWorkerCrashed: the worker died or dropped the connection while the
	// request was in flight. [502]
	ErrWorkerCrashed = errors.New("mlbridge: worker crashed")
	// ErrProtocol: the worker broke the framing or the protocol (bad length,
	// malformed JSON, mismatched request_id); its connection was replaced. [502]
	ErrProtocol = errors.New("mlbridge: protocol fault")
	// ErrClosed: the supervisor is not running (not started, or closed). [503]
	ErrClosed = errors.New("mlbridge: supervisor closed")
	// ErrInvalidInput: the caller's model name or input is malformed. [400]
	ErrInvalidInput = errors.New("mlbridge: invalid input")
	// ErrTooLarge: the request would exceed the frame size limit. [413]
	ErrTooLarge = errors.New("mlbridge: request too large")
	// ErrUnsupported: the worker does not implement the request (a foreign
	// worker without the list_models extension). [501, or an empty list]
	ErrUnsupported = errors.New("mlbridge: not supported by the worker")
)

// ErrFrameTooLarge and ErrEmptyFrame are the framing faults; both are
// ErrProtocol.
var (
	ErrFrameTooLarge = fmt.Errorf("%w: frame exceeds the size limit", ErrProtocol)
	ErrEmptyFrame    = fmt.Errorf("%w: zero-length frame", ErrProtocol)
)

// ModelError is an error the model itself reported in the response's error
// field, such as invalid input. Message is the worker's text, safe to show
// to the caller. [422]
type ModelError struct {
	Model   string
	Message string
}

func (e *ModelError) Error() string {
	return fmt.Sprintf("mlbridge: model %q: %s", e.Model, e.Message)
}

// timeoutErr builds an error matching both ErrTimeout and
// context.DeadlineExceeded.
func timeoutErr(what string) error {
	return fmt.Errorf("%w: %s: %w", ErrTimeout, what, context.DeadlineExceeded)
}

package ws

import (
	"errors"
	"fmt"
)

// Errors returned by Conn's send methods and Engine.Serve, and found (with
// errors.Is) in the error given to Handler.OnClose.
var (
	// ErrQueueFull: the message would take the connection's outbound queue
	// over Config.MaxQueueBytes or Config.MaxQueueMessages. Nothing was
	// queued and the connection is left open: the caller decides whether to
	// drop the message or to close (say with CloseWith and a "slow
	// consumer" code).
	ErrQueueFull = errors.New("ws: outbound queue full")
	// ErrMessageTooLarge: the framed message alone is larger than
	// Config.MaxQueueBytes, so it can never be queued.
	ErrMessageTooLarge = errors.New("ws: message larger than the queue bound")
	// ErrClosed: the connection is closing or closed.
	ErrClosed = errors.New("ws: connection closed")
	// ErrEngineClosed: the Engine was closed; in OnClose, the connection
	// was closed by Engine.Close.
	ErrEngineClosed = errors.New("ws: engine closed")

	// ErrIdleTimeout: no frame of any kind (pongs included) arrived within
	// Config.IdleTimeout; a close frame with Config.IdleCloseCode was sent.
	ErrIdleTimeout = errors.New("ws: idle timeout (no pong)")
	// ErrReadTimeout: a message or control frame was not fully received
	// within Config.ReadTimeout of its first byte; a 1008 close frame was
	// sent.
	ErrReadTimeout = errors.New("ws: read timeout within a frame")
	// ErrWrite: writing to the socket failed or did not finish within
	// Config.WriteTimeout (a peer that stopped reading); the network error
	// is wrapped too, so errors.Is(err, os.ErrDeadlineExceeded) tells a
	// timeout.
	ErrWrite = errors.New("ws: write failed")
	// ErrStalled: the writer was blocked on the socket past
	// Config.StallTimeout (a peer that stopped reading); the connection
	// was closed with Config.StallCode.
	ErrStalled = errors.New("ws: peer stopped reading")
	// ErrProtocol: the peer broke RFC 6455; CloseError.Code is the code
	// sent (1002, 1007 or 1009) and Reason says what was wrong.
	ErrProtocol = errors.New("ws: protocol error")
	// ErrPeerClosed: the peer sent a close frame (CloseError.Remote) or
	// closed the TCP connection without one (Code CloseAbnormal).
	ErrPeerClosed = errors.New("ws: closed by peer")
	// ErrLocalClose: CloseWith was called; Code and Reason are its
	// arguments.
	ErrLocalClose = errors.New("ws: closed locally")
)

// CloseError is the error given to Handler.OnClose: why the connection
// ended. The first reason wins: if the gateway calls CloseWith and the peer
// then answers with its own close frame, the error is the local close.
type CloseError struct {
	// Code is the close code sent or, when Remote, received. It is
	// CloseAbnormal (1006) when no close frame was exchanged (peer vanished,
	// idle timeout, write error, Engine.Close) and CloseNoStatus (1005)
	// when the peer's close frame had no code.
	Code int
	// Reason is the close reason sent or received (may be empty).
	Reason string
	// Remote reports whether the peer started the close handshake.
	Remote bool
	// Err is the cause: one of the Err* values of this package, possibly
	// wrapping a network error (a failed or timed-out write, for
	// instance).
	Err error
}

// Error describes the close: who started it, the code, the reason, the cause.
func (e *CloseError) Error() string {
	who := "local"
	if e.Remote {
		who = "peer"
	}
	return fmt.Sprintf("ws: connection closed (%s, code %d %q): %v", who, e.Code, e.Reason, e.Err)
}

// Unwrap returns Err, so that errors.Is finds the Err* cause.
func (e *CloseError) Unwrap() error { return e.Err }

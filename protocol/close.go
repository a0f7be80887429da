package protocol

// Close codes. Standard codes are used where they fit: 1000 normal, 1001
// going away, 1007 invalid UTF-8, 1008 policy violation, 1009 message too big,
// 1011 server error, 1012 service restart.
//
// 4000–4499 tell the client to reconnect (with backoff and jitter): the
// condition is temporary or on the server's side. 4500–4999 tell it not to
// reconnect with the same credentials: something must change first.
//
// Every code below is sent by the server somewhere (the ws engine sends the
// RFC 6455 ones itself); a client meeting another code in a range follows
// the range's rule.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001
	CloseInvalidUTF8   = 1007
	ClosePolicy        = 1008
	CloseTooBig        = 1009
	CloseInternalError = 1011
	// CloseServiceRestart asks a client to reconnect at once: `unhidra
	// device check` sends it to watch a device's reconnect (the server
	// restarting sends CloseShutdown).
	CloseServiceRestart = 1012

	CloseShutdown       = 4000 // the server is draining or restarting
	CloseSlowConsumer   = 4001 // the client did not read fast enough; its queue overflowed
	CloseIdleTimeout    = 4003 // no frame (not even a pong) within the idle timeout
	CloseRateLimited    = 4004 // persistent flooding after rate-limit errors
	CloseTokenExpired   = 4005 // the access token expired without a refresh: refresh, then reconnect
	CloseReplaced       = 4006 // a newer connection of the same device took over
	CloseBadCredentials = 4500 // the credentials are not valid any more
	CloseRevoked        = 4501 // the device key was revoked or the account disabled
	CloseKicked         = 4502 // an administrator ended the session
)

// Reconnectable reports whether a client should reconnect after code.
func Reconnectable(code int) bool {
	switch {
	case code >= 4500 && code <= 4999:
		return false
	case code == ClosePolicy:
		return false
	}
	return true
}

// CloseReason returns the short reason text sent with code.
func CloseReason(code int) string {
	switch code {
	case CloseShutdown:
		return "server shutting down"
	case CloseSlowConsumer:
		return "slow consumer"
	case CloseIdleTimeout:
		return "idle timeout"
	case CloseRateLimited:
		return "rate limit exceeded"
	case CloseTokenExpired:
		return "token expired"
	case CloseReplaced:
		return "replaced by a newer connection"
	case CloseBadCredentials:
		return "bad credentials"
	case CloseRevoked:
		return "revoked"
	case CloseKicked:
		return "kicked"
	}
	return ""
}

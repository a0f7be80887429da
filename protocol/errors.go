package protocol

// Error codes beyond those of error frames (see frames.go): HTTP answers use
// them too. A code means the same in a Go error (unhidra.Error), an HTTP
// error body and an error frame.
const (
	ErrUnsupported    = "unsupported"     // e.g. a wrong content type
	ErrAccountLocked  = "account_locked"  // too many failed logins; the account waits
	ErrUnprocessable  = "unprocessable"   // well-formed, but the processor rejected it (a model's input)
	ErrUpstream       = "upstream"        // a component we depend on failed (an ML worker crashed)
	ErrTimeout        = "timeout"         // a component we depend on did not answer in time
	ErrNotImplemented = "not_implemented" // the server does not offer this
)

// codeInfo is one row of the mapping: how an error code is answered over
// HTTP and, when it ends a WebSocket connection, with which close code
// (0: the code never ends a connection, it is answered with an error frame).
type codeInfo struct {
	code   string
	status int
	close  int
}

// codeTable is the one mapping error code -> HTTP status -> close code.
// Order matters for StatusCode's inverse: the first code of a status wins.
var codeTable = []codeInfo{
	{ErrInvalid, 400, 0},
	{ErrBadFrame, 400, 0},
	{ErrUnknownType, 400, 0},
	{ErrWrongDevice, 400, 0},
	{ErrUnauthorized, 401, CloseBadCredentials},
	{ErrForbidden, 403, ClosePolicy},
	{ErrNotFound, 404, 0},
	{ErrConflict, 409, 0},
	{ErrTooLarge, 413, CloseTooBig},
	{ErrUnsupported, 415, 0},
	{ErrUnprocessable, 422, 0},
	{ErrRateLimited, 429, CloseRateLimited},
	{ErrAccountLocked, 429, CloseBadCredentials},
	{ErrInternal, 500, CloseInternalError},
	{ErrNotImplemented, 501, 0},
	{ErrUpstream, 502, 0},
	{ErrUnavailable, 503, 0},
	{ErrTimeout, 504, 0},
}

// Codes returns every error code, in table order.
func Codes() []string {
	out := make([]string, len(codeTable))
	for i, c := range codeTable {
		out[i] = c.code
	}
	return out
}

// HTTPStatus returns the HTTP status of an error code (500 for an unknown
// code).
func HTTPStatus(code string) int {
	for _, c := range codeTable {
		if c.code == code {
			return c.status
		}
	}
	return 500
}

// CloseCodeOf returns the close code for a connection that ends because of
// an error with code, or 0 when that code does not end connections.
func CloseCodeOf(code string) int {
	for _, c := range codeTable {
		if c.code == code {
			return c.close
		}
	}
	return CloseInternalError
}

// CodeForStatus returns the error code of an HTTP status: the first code of
// the table with that status; otherwise ErrInvalid for other 4xx statuses
// and ErrUnavailable for the rest.
func CodeForStatus(status int) string {
	for _, c := range codeTable {
		if c.status == status {
			return c.code
		}
	}
	if status >= 400 && status < 500 {
		return ErrInvalid
	}
	return ErrUnavailable
}

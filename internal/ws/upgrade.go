package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// HandshakeError is a refused opening handshake. Status is the HTTP status to
// answer with: 405 for a method other than GET, 426 (Upgrade Required, with
// "Sec-WebSocket-Version: 13") for a missing or unsupported version, 400 for
// anything else.
type HandshakeError struct {
	Status int
	Reason string
}

// Error describes the refusal.
func (e *HandshakeError) Error() string {
	return fmt.Sprintf("ws: bad handshake (%d): %s", e.Status, e.Reason)
}

// Respond writes e as the HTTP response, with the headers RFC 6455 and RFC
// 9110 ask for (Sec-WebSocket-Version on 426, Allow on 405).
func (e *HandshakeError) Respond(w http.ResponseWriter) {
	switch e.Status {
	case http.StatusUpgradeRequired:
		w.Header().Set("Sec-WebSocket-Version", "13")
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodGet)
	}
	http.Error(w, e.Reason, e.Status)
}

// handshakeWriteTimeout bounds the write of the 101 response.
const handshakeWriteTimeout = 10 * time.Second

// acceptGUID is the fixed string of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// CheckUpgrade validates r as a WebSocket opening handshake (RFC 6455
// §4.2.1) without writing anything, so that a caller can authenticate first
// and refuse with a status of its own. The error, if any, is a
// *HandshakeError.
//
// Extensions offered by the client are ignored (none is ever negotiated), and
// Origin is not checked: browsers send it, and the gateway decides whether it
// matters.
func CheckUpgrade(r *http.Request) error {
	if r.Method != http.MethodGet {
		return &HandshakeError{http.StatusMethodNotAllowed, "websocket: method must be GET"}
	}
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return &HandshakeError{http.StatusBadRequest, "websocket: HTTP/1.1 required"}
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return &HandshakeError{http.StatusBadRequest, `websocket: "Upgrade: websocket" header missing`}
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return &HandshakeError{http.StatusBadRequest, `websocket: "Connection: Upgrade" header missing`}
	}
	if v := r.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || strings.TrimSpace(v[0]) != "13" {
		return &HandshakeError{http.StatusUpgradeRequired, "websocket: Sec-WebSocket-Version must be 13"}
	}
	if _, err := challengeKey(r); err != nil {
		return err
	}
	return nil
}

// challengeKey returns the client's Sec-WebSocket-Key after checking that
// there is exactly one and that it is base64 of 16 bytes.
func challengeKey(r *http.Request) (string, error) {
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return "", &HandshakeError{http.StatusBadRequest, "websocket: need exactly one Sec-WebSocket-Key"}
	}
	key := strings.TrimSpace(keys[0])
	if len(key) != 24 {
		return "", &HandshakeError{http.StatusBadRequest, "websocket: Sec-WebSocket-Key is not 16 bytes of base64"}
	}
	var raw [18]byte // 24 base64 characters decode to at most 18 bytes
	n, err := base64.StdEncoding.Decode(raw[:], []byte(key))
	if err != nil || n != 16 {
		return "", &HandshakeError{http.StatusBadRequest, "websocket: Sec-WebSocket-Key is not 16 bytes of base64"}
	}
	return key, nil
}

// headerHasToken reports whether any value of header name, read as a
// comma-separated token list, contains token (ASCII case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// AcceptKey returns the Sec-WebSocket-Accept value for a client's
// Sec-WebSocket-Key.
func AcceptKey(challenge string) string {
	return string(appendAcceptKey(nil, challenge))
}

// appendAcceptKey appends AcceptKey(challenge) to dst without allocating
// for a 24-character key.
func appendAcceptKey(dst []byte, challenge string) []byte {
	var in [24 + len(acceptGUID)]byte
	b := append(in[:0], challenge...)
	b = append(b, acceptGUID...)
	sum := sha1.Sum(b)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// Upgrade completes the opening handshake: it validates r (like
// CheckUpgrade; on failure it writes the refusal itself and returns the
// *HandshakeError), hijacks the connection, and writes the 101 response with
// a 10-second write deadline.
//
// The response carries Sec-WebSocket-Protocol only when subprotocol is
// non-empty, and exactly that value: nothing the client offered is echoed
// unless the caller chose it. subprotocol must be an RFC 9110 token; it is not
// checked against the client's offer. extra adds headers to the 101 (values
// must not contain CR or LF; the WebSocket headers themselves cannot be
// overridden). Headers set on w are not sent. No extension is ever
// negotiated.
//
// It returns the hijacked connection and a copy of any bytes the HTTP server
// had already read past the request (the client's first frames, possibly):
// pass both to Engine.Serve. With a server built on WrapListener and TLS, the
// connection is a *tls.Conn.
func Upgrade(w http.ResponseWriter, r *http.Request, subprotocol string, extra http.Header) (net.Conn, []byte, error) {
	conn, buffered, resp, err := hijack(w, r, subprotocol, extra)
	if err != nil {
		return nil, nil, err
	}
	if err := conn.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ws: set write deadline: %w", err)
	}
	if _, err := conn.Write(resp); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ws: write 101 response: %w", err)
	}
	// http.Server may have left deadlines from its own timeouts.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ws: clear deadlines: %w", err)
	}
	return conn, buffered, nil
}

// UpgradeDeferred is Upgrade without writing the 101 response: it returns
// it, for Engine.AdoptUpgraded to write as the start of the connection's
// first write, together with the frames OnOpen sends (a write system call
// fewer per connection). Refusals are answered as by Upgrade. Any deadline
// net/http left on the connection is cleared.
func UpgradeDeferred(w http.ResponseWriter, r *http.Request, subprotocol string, extra http.Header) (conn net.Conn, buffered, response []byte, err error) {
	conn, buffered, response, err = hijack(w, r, subprotocol, extra)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("ws: clear deadlines: %w", err)
	}
	return conn, buffered, response, nil
}

// hijack validates r and the caller's choices, takes the connection over
// from net/http and builds the 101 response, without writing it.
func hijack(w http.ResponseWriter, r *http.Request, subprotocol string, extra http.Header) (net.Conn, []byte, []byte, error) {
	if err := CheckUpgrade(r); err != nil {
		var he *HandshakeError
		if errors.As(err, &he) {
			he.Respond(w)
		}
		return nil, nil, nil, err
	}
	if subprotocol != "" && !IsToken(subprotocol) {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil, nil, nil, fmt.Errorf("ws: subprotocol %q is not a token", subprotocol)
	}
	for name, values := range extra {
		if !IsToken(name) || reservedResponseHeader(name) {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return nil, nil, nil, fmt.Errorf("ws: extra header %q not allowed", name)
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return nil, nil, nil, fmt.Errorf("ws: extra header %q has a control character", name)
			}
		}
	}
	key, _ := challengeKey(r) // validated by CheckUpgrade

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "websocket: cannot take over the connection", http.StatusInternalServerError)
		return nil, nil, nil, fmt.Errorf("ws: hijack: %w", err)
	}
	var buffered []byte
	if n := brw.Reader.Buffered(); n > 0 {
		peeked, _ := brw.Reader.Peek(n)
		buffered = append([]byte(nil), peeked...)
	}

	resp := make([]byte, 0, 256)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = appendAcceptKey(resp, key)
	resp = append(resp, "\r\n"...)
	if subprotocol != "" {
		resp = append(resp, "Sec-WebSocket-Protocol: "...)
		resp = append(resp, subprotocol...)
		resp = append(resp, "\r\n"...)
	}
	for name, values := range extra {
		for _, v := range values {
			resp = append(resp, http.CanonicalHeaderKey(name)...)
			resp = append(resp, ": "...)
			resp = append(resp, v...)
			resp = append(resp, "\r\n"...)
		}
	}
	resp = append(resp, "\r\n"...)
	return conn, buffered, resp, nil
}

// reservedResponseHeader reports whether Upgrade writes header name itself.
func reservedResponseHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Content-Length", "Transfer-Encoding":
		return true
	}
	return false
}

// IsToken reports whether s is a non-empty RFC 9110 token, the only
// characters a subprotocol or header name may contain.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

package frontdoor

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/textproto"
	"net/url"

	"github.com/unhidra/unhidra/internal/ws"
)

// head is a request head the fast path takes.
type head struct {
	target string // as sent: the RequestURI
	url    *url.URL
	host   string
	header http.Header // without Host, as net/http's
}

const maxHeaderLines = 64

// parseHead parses a request head, which ends with "\r\n\r\n". It takes
// only what net/http parses to the same request and would serve; ok is
// false for everything else, which net/http then reads and answers.
func parseHead(b []byte) (h *head, ok bool) {
	b = b[:len(b)-2] // keep one "\r\n" after the last line
	i := bytes.Index(b, []byte("\r\n"))
	line := b[:i]
	b = b[i+2:]
	const method, proto = "GET ", " HTTP/1.1"
	if len(line) <= len(method)+len(proto) || !bytes.HasPrefix(line, []byte(method)) || !bytes.HasSuffix(line, []byte(proto)) {
		return nil, false
	}
	target := line[len(method) : len(line)-len(proto)]
	if len(target) == 0 || target[0] != '/' {
		return nil, false
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, false
		}
	}
	h = &head{target: string(target), header: make(http.Header, 8)}
	u, err := url.ParseRequestURI(h.target)
	if err != nil {
		return nil, false
	}
	h.url = u
	hosts := 0
	for lines := 0; len(b) > 0; lines++ {
		i := bytes.Index(b, []byte("\r\n"))
		line := b[:i]
		b = b[i+2:]
		colon := bytes.IndexByte(line, ':')
		if lines == maxHeaderLines || colon <= 0 {
			return nil, false
		}
		name, value := string(line[:colon]), trimSpace(line[colon+1:])
		if !ws.IsToken(name) || !isPrintable(value) {
			return nil, false
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Host":
			if hosts++; hosts > 1 || !isHost(value) {
				return nil, false
			}
			h.host = string(value)
			continue
		case "Content-Length", "Transfer-Encoding", "Expect", "Pragma":
			// A body, an expectation to answer, or a header net/http
			// rewrites: net/http's business.
			return nil, false
		}
		h.header[key] = append(h.header[key], string(value))
	}
	if hosts != 1 {
		return nil, false
	}
	return h, true
}

// request builds the request net/http would have built.
func (h *head) request(ctx context.Context, c net.Conn) *http.Request {
	r := &http.Request{
		Method: http.MethodGet, URL: h.url, RequestURI: h.target,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h.header, Host: h.host, Body: http.NoBody,
		RemoteAddr: c.RemoteAddr().String(),
	}
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		r.TLS = &st
	}
	return r.WithContext(ctx)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isPrintable reports whether a header value has only visible ASCII,
// spaces and tabs (no control characters, no obs-text).
func isPrintable(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// isHost accepts the host[:port] forms a client sends: names, IPv4 and
// bracketed IPv6 addresses. Anything else is left to net/http's checks.
func isHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

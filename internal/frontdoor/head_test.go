package frontdoor

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

const upgradeHead = "GET /ws?v=1 HTTP/1.1\r\n" +
	"Host: example.com:8443\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Sec-WebSocket-Protocol: unhidra.v1, bearer.abc\r\n" +
	"sec-websocket-protocol:\t second \r\n" +
	"Origin: https://example.com:8443\r\n\r\n"

func TestParseHead_TakesAnUpgrade(t *testing.T) {
	h, ok := parseHead([]byte(upgradeHead))
	if !ok {
		t.Fatal("a plain upgrade request was not taken")
	}
	if h.target != "/ws?v=1" || h.url.Path != "/ws" || h.url.RawQuery != "v=1" || h.host != "example.com:8443" {
		t.Fatalf("target %q path %q query %q host %q", h.target, h.url.Path, h.url.RawQuery, h.host)
	}
	want := http.Header{
		"Upgrade":                {"websocket"},
		"Connection":             {"Upgrade"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Protocol": {"unhidra.v1, bearer.abc", "second"},
		"Origin":                 {"https://example.com:8443"},
	}
	if !reflect.DeepEqual(h.header, want) {
		t.Fatalf("header %v, want %v", h.header, want)
	}
	agreesWithNetHTTP(t, []byte(upgradeHead), h)
}

// Each of these is left to net/http, which answers it (or not) as it
// answers any other request.
func TestParseHead_LeavesTheUnusualToNetHTTP(t *testing.T) {
	base := strings.TrimSuffix(upgradeHead, "\r\n")
	cases := map[string]string{
		"POST":                  strings.Replace(upgradeHead, "GET", "POST", 1),
		"lower-case method":     strings.Replace(upgradeHead, "GET", "get", 1),
		"HTTP/1.0":              strings.Replace(upgradeHead, "HTTP/1.1", "HTTP/1.0", 1),
		"HTTP/2.0":              strings.Replace(upgradeHead, "HTTP/1.1", "HTTP/2.0", 1),
		"absolute-form target":  strings.Replace(upgradeHead, "/ws?v=1", "http://example.com/ws", 1),
		"asterisk target":       strings.Replace(upgradeHead, "/ws?v=1", "*", 1),
		"two spaces":            strings.Replace(upgradeHead, "GET /", "GET  /", 1),
		"space in target":       strings.Replace(upgradeHead, "/ws?v=1", "/ws x", 1),
		"control in target":     strings.Replace(upgradeHead, "/ws?v=1", "/ws\x01", 1),
		"bad escape":            strings.Replace(upgradeHead, "/ws?v=1", "/w%zz", 1),
		"no Host":               strings.Replace(upgradeHead, "Host: example.com:8443\r\n", "", 1),
		"two Hosts":             base + "Host: evil.example\r\n\r\n",
		"empty Host":            strings.Replace(upgradeHead, "Host: example.com:8443", "Host: ", 1),
		"Host with a slash":     strings.Replace(upgradeHead, "example.com:8443\r\n", "example.com/x\r\n", 1),
		"Content-Length":        base + "Content-Length: 5\r\n\r\n",
		"Content-Length zero":   base + "Content-Length: 0\r\n\r\n",
		"Transfer-Encoding":     base + "Transfer-Encoding: chunked\r\n\r\n",
		"Expect":                base + "Expect: 100-continue\r\n\r\n",
		"Pragma":                base + "Pragma: no-cache\r\n\r\n",
		"continuation line":     base + "X-A: one\r\n two\r\n\r\n",
		"space before colon":    base + "X-A : one\r\n\r\n",
		"empty name":            base + ": one\r\n\r\n",
		"no colon":              base + "X-A one\r\n\r\n",
		"name with a slash":     base + "X/A: one\r\n\r\n",
		"bare LF in a value":    base + "X-A: one\ntwo\r\n\r\n",
		"bare CR in a value":    base + "X-A: one\rtwo\r\n\r\n",
		"NUL in a value":        base + "X-A: one\x00two\r\n\r\n",
		"DEL in a value":        base + "X-A: one\x7f\r\n\r\n",
		"obs-text in a value":   base + "X-A: caf\xc3\xa9\r\n\r\n",
		"too many header lines": base + strings.Repeat("X-A: 1\r\n", maxHeaderLines) + "\r\n",
	}
	for name, head := range cases {
		if h, ok := parseHead([]byte(head)); ok {
			t.Errorf("%s: taken as %+v", name, h)
		}
	}
}

// FuzzParseHead: whatever the fast path takes, net/http reads to the same
// request; whatever net/http refuses, the fast path does not take.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte(upgradeHead))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: [::1]:80\r\nX: \t\r\nX:y\r\n\r\n"))
	f.Add([]byte("GET /%41?%zz#f HTTP/1.1\r\nHost: a_b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			b = b[:i+4]
		} else {
			b = append(b, "\r\n\r\n"...)
		}
		if !bytes.Contains(b[:len(b)-2], []byte("\r\n")) {
			return // parseHead's caller always has a request line and the end
		}
		h, ok := parseHead(b)
		if ok {
			agreesWithNetHTTP(t, b, h)
		}
	})
}

func agreesWithNetHTTP(t *testing.T, b []byte, h *head) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("taken, but net/http refuses %q: %v", b, err)
	}
	delete(r.Header, "Host") // as net/http's server does
	if r.Method != http.MethodGet || r.RequestURI != h.target || r.URL.String() != h.url.String() ||
		r.URL.Path != h.url.Path || r.Host != h.host || r.ContentLength != 0 || r.Close {
		t.Fatalf("%q: net/http reads %s %q path %q host %q length %d close %v; taken as %q path %q host %q",
			b, r.Method, r.RequestURI, r.URL.Path, r.Host, r.ContentLength, r.Close, h.target, h.url.Path, h.host)
	}
	if len(r.Header) != 0 || len(h.header) != 0 {
		if !reflect.DeepEqual(r.Header, h.header) {
			t.Fatalf("%q: net/http reads the header as %q, taken as %q", b, r.Header, h.header)
		}
	}
}

package gateway

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"
)

func TestOriginAllowed(t *testing.T) {
	cases := []struct {
		name    string
		tls     bool
		host    string
		origin  string
		allowed []string
		want    bool
	}{
		{"no origin", true, "chat.example:8443", "", nil, true},
		{"own origin over TLS", true, "chat.example:8443", "https://chat.example:8443", nil, true},
		{"own origin, default port", true, "chat.example", "https://CHAT.example:443", nil, true},
		{"http on the TLS port", true, "chat.example:8443", "http://chat.example:8443", nil, false},
		{"other port", true, "chat.example:8443", "https://chat.example:9443", nil, false},
		{"default port differs", true, "chat.example:8443", "https://chat.example", nil, false},
		{"other host", true, "chat.example:8443", "https://evil.example:8443", nil, false},
		{"plain behind a proxy, https", false, "chat.example", "https://chat.example", nil, true},
		{"plain, http", false, "chat.example:8080", "http://chat.example:8080", nil, true},
		{"null origin", true, "chat.example", "null", nil, false},
		{"path in origin", true, "chat.example", "https://chat.example/x", nil, false},
		{"userinfo", true, "chat.example", "https://u@chat.example", nil, false},
		{"other scheme", true, "chat.example", "ftp://chat.example", nil, false},
		{"listed", true, "api.example", "https://app.example", []string{"https://app.example:443"}, true},
		{"listed, wrong scheme", true, "api.example", "http://app.example", []string{"https://app.example"}, false},
		{"listed, wrong port", true, "api.example", "https://app.example:444", []string{"https://app.example"}, false},
		{"wildcard", true, "api.example", "https://any.example", []string{"*"}, true},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Host = c.host
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		} else {
			r.TLS = nil
		}
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if got := originAllowed(r, c.allowed); got != c.want {
			t.Errorf("%s: originAllowed = %v, want %v", c.name, got, c.want)
		}
	}
}

func FuzzParseOrigin(f *testing.F) {
	f.Add("https://a.example:1")
	f.Add("http://[::1]:80")
	f.Fuzz(func(t *testing.T, s string) {
		if k, ok := parseOrigin(s); ok && (k.host == "" || k.port == "" || (k.scheme != "http" && k.scheme != "https")) {
			t.Fatalf("parseOrigin(%q) = %+v", s, k)
		}
	})
}

package web_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/web"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	h, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux, api.Helpers{})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

func TestServesAppWithStrictPolicy(t *testing.T) {
	srv := newServer(t)
	for path, ctype := range map[string]string{
		"/":                   "text/html",
		"/assets/app.css":     "text/css",
		"/assets/js/main.js":  "javascript",
		"/assets/js/chat.js":  "javascript",
		"/assets/icon.svg":    "image/svg+xml",
		"/assets/js/admin.js": "javascript",
	} {
		res := get(t, srv.URL+path)
		if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %q", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "require-trusted-types-for 'script'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP allows unsafe sources: %q", path, csp)
		}
		// Revalidated with an ETag: a new binary never runs with stale files.
		etag := res.Header.Get("ETag")
		if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q", path, etag, res.Header.Get("Cache-Control"))
		}
		if again := get(t, srv.URL+path, "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", path, again.StatusCode)
		}
	}
	for _, path := range []string{"/assets/", "/assets/nope.js", "/assets/../web.go", "/index.html", "/assets/index.html"} {
		if res := get(t, srv.URL+path); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, res.StatusCode)
		}
	}
}

// The page's policy makes string-to-HTML sinks throw; this keeps the code
// from relying on them (they would fail only at run time, in a browser),
// and from inline styles or handlers the policy would block.
func TestAppUsesNoStringSinks(t *testing.T) {
	forbidden := regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function\(|setAttribute\(\s*['"](style|on\w+)['"]|javascript:`)
	inline := regexp.MustCompile(`<script>|\son\w+=|\sstyle=`)
	n := 0
	err := filepath.WalkDir("static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		re := forbidden
		if strings.HasSuffix(path, ".html") {
			re = inline
		}
		for i, line := range strings.Split(string(b), "\n") {
			if re.MatchString(line) {
				t.Errorf("%s:%d: %s", path, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

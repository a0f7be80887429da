// Package web serves the browser app: a few static files embedded in the
// binary (no build step), under a Content-Security-Policy strict enough that
// markup injected into the page can neither run script nor load anything.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/unhidra/unhidra/internal/api"
)

//go:generate go run ./jsgen/cmd -protocol ../../protocol -o static/js/protocol.js

//go:embed static
var files embed.FS

// ContentSecurityPolicy allows the app's own scripts, styles and
// connections (WebSocket included: 'self' covers wss: on the same host) and
// nothing else. Trusted Types with no policy make every string-to-HTML sink
// (innerHTML and friends) throw, so the app can only build the DOM from
// nodes and text.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// asset is one embedded file with what its responses need.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the app: the page at "/" and its files under "/assets/".
type Handler struct {
	assets map[string]asset // by URL path
}

// New reads the embedded files once, so each request is a map lookup.
func New() (*Handler, error) {
	h := &Handler{assets: make(map[string]asset)}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		urlPath := "/assets/" + strings.TrimPrefix(p, "static/")
		if p == "static/index.html" {
			urlPath = "/"
		}
		h.assets[urlPath] = asset{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	return h, err
}

// Mount adds the app's routes; it has the signature of api.Deps.Mount.
func (h *Handler) Mount(mux *http.ServeMux, _ api.Helpers) {
	mux.Handle("GET /{$}", h)
	mux.Handle("GET /assets/", h)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	// Revalidate every time: the files are small, and a new binary must
	// never run next to a cached older script.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

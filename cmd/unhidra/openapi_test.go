package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/api"
)

// TestOpenAPI_EveryOperationIsServed asks a running server (ML on, so its
// routes exist) for every operation of the OpenAPI document, as an
// administrator, and requires that a handler answers: not the mux's 405,
// not its plain 404, not the API's "No such endpoint.". Together with the
// source scan in internal/api this proves the document and the routes
// match both ways.
func TestOpenAPI_EveryOperationIsServed(t *testing.T) {
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	s := startServer(t, t.TempDir(), env, "--ml-workers", "1")
	_, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	token, _ := body["access_token"].(string)
	if token == "" {
		t.Fatalf("login: %v", body)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	n := 0
	for path, item := range doc.Paths {
		for method := range item {
			method = strings.ToUpper(method)
			concrete := param.ReplaceAllString(path, "zz-unknown")
			if path == "/assets/{asset}" {
				concrete = "/assets/app.css"
			}
			req, _ := http.NewRequest(method, s.url+concrete, nil)
			if strings.HasPrefix(path, "/api/") && path != "/api/v1/openapi.json" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			if method != "GET" && method != "DELETE" {
				req.Header.Set("Content-Type", "application/json")
				req.Body = io.NopCloser(strings.NewReader("{}"))
			}
			res, err := s.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, concrete, err)
			}
			b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
			n++
			switch {
			case res.StatusCode == http.StatusMethodNotAllowed,
				res.StatusCode == http.StatusNotFound && strings.Contains(string(b), "No such endpoint."),
				res.StatusCode == http.StatusNotFound && strings.HasPrefix(string(b), "404 page not found"):
				t.Errorf("%s %s (documented as %s %s): no route, %d %s", method, concrete, method, path, res.StatusCode, b)
			}
			if res.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s %s: no X-Request-Id", method, concrete)
			}
		}
	}
	if n < 60 {
		t.Fatalf("only %d operations tried", n)
	}
	// The check itself tells an unknown route apart.
	res, err := s.client.Get(s.url + "/api/v1/no-such-thing")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 404 || !strings.Contains(string(b), "No such endpoint.") {
		t.Fatalf("unknown route: %d %s", res.StatusCode, b)
	}
}

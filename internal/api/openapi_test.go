package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
)

// documentedRoutes returns the ServeMux pattern of every operation in the
// OpenAPI document: METHOD PATH, or the operation's x-mux-pattern where
// OpenAPI cannot say it ("/{$}", prefix patterns).
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q, want 3.1.0", doc.OpenAPI)
	}
	var out []string
	for path, item := range doc.Paths {
		for method, raw := range item {
			var op struct {
				OperationID string `json:"operationId"`
				Pattern     string `json:"x-mux-pattern"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			p := strings.ToUpper(method) + " " + path
			if op.Pattern != "" {
				p = op.Pattern
			}
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// routeLiteral matches a ServeMux pattern with a method in a Go string
// literal: every route of the server is registered with one.
var routeLiteral = regexp.MustCompile(`"((?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /[^"\s]*)"`)

// registeredRoutes finds the route patterns in the module's non-test Go
// files, other programs' (load tools, comparison servers) aside.
func registeredRoutes(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "wsbench":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Other programs (load tools, comparison servers) serve their own
		// routes; only the server binary's count.
		if rel, _ := filepath.Rel(root, path); regexp.MustCompile(`(?m)^package main\b`).Match(src) && !strings.HasPrefix(rel, "cmd/unhidra/") {
			return nil
		}
		for _, line := range strings.Split(string(src), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			for _, m := range routeLiteral.FindAllStringSubmatch(line, -1) {
				rel, _ := filepath.Rel(root, path)
				found[m[1]] = append(found[m[1]], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestOpenAPI_DescribesEveryRoute: every route registered in the code is
// in openapi.json, and every operation there is registered. (That the
// server really serves each one is checked against a running server in
// cmd/unhidra.)
func TestOpenAPI_DescribesEveryRoute(t *testing.T) {
	doc := documentedRoutes(t)
	code := registeredRoutes(t)
	if len(code) < 50 {
		t.Fatalf("found only %d routes in the code: the scan is broken", len(code))
	}
	for p, files := range code {
		if !slices.Contains(doc, p) {
			t.Errorf("route %q (%s) is not described in internal/api/openapi.json", p, strings.Join(files, ", "))
		}
	}
	for _, p := range doc {
		if _, ok := code[p]; !ok {
			t.Errorf("openapi.json describes %q, which no code registers", p)
		}
	}
	for i := 1; i < len(doc); i++ {
		if doc[i] == doc[i-1] {
			t.Errorf("%q described twice", doc[i])
		}
	}
}

func TestOpenAPI_Served(t *testing.T) {
	ts := newTestServer(t, auth.PasswordHasherConfig{})
	res, err := http.Get(ts.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !bytes.Equal(body, api.OpenAPI) {
		t.Fatal("served document differs from openapi.json")
	}
}

// TestOpenAPI_ThirdPartyLint validates the document with Redocly's CLI
// (npm, installed by scripts/setup.sh into tools/apilint) under the
// recommended-strict rules.
func TestOpenAPI_ThirdPartyLint(t *testing.T) {
	dir, _ := filepath.Abs("../../tools/apilint")
	bin := filepath.Join(dir, "node_modules", ".bin", "redocly")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redocly is not installed (scripts/setup.sh installs it): %v", err)
		}
		t.Skip("redocly not installed; run scripts/setup.sh")
	}
	cmd := exec.Command(bin, "lint", "--config", "redocly.yaml", "--format", "stylish", "../../internal/api/openapi.json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redocly lint: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "valid") {
		t.Fatalf("unexpected redocly output:\n%s", out)
	}
}

package unhidra_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/unhidra/unhidra"

// Package sets of the rules, as paths relative to the module ("." is the
// root package; "x/..." is x and everything below it).
var (
	domain    = []string{"internal/chat", "internal/device", "internal/auth", "internal/bot", "internal/mlbridge"}
	transport = []string{"internal/api", "internal/gateway", "internal/ws", "internal/httpx"}
	adapters  = []string{"internal/chat/chatws", "internal/chat/chathttp", "internal/device/devicews", "internal/device/devicehttp"}
	storage   = []string{"internal/store/..."}
)

func join(sets ...[]string) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s...)
	}
	return out
}

// importRules are the architecture's import rules, enforced below and
// tabled in docs/ARCHITECTURE.md. A rule applies to the non-test imports
// of the packages it names: Forbid lists packages they must not import;
// Only, when set, lists everything besides the standard library they may
// import.
var importRules = []struct {
	Name     string
	Packages []string
	Forbid   []string
	Only     []string
}{
	{Name: "domain services speak no transport", Packages: domain,
		Forbid: join(transport, adapters, []string{"net/http"})},
	{Name: "the domain does not import its adapters", Packages: []string{"internal/chat", "internal/device"},
		Forbid: adapters},
	{Name: "domains do not import each other (device posts to chat through an interface)",
		Packages: []string{"internal/device"}, Forbid: []string{"internal/chat"}},
	{Name: "domains do not import each other", Packages: []string{"internal/chat"}, Forbid: []string{"internal/device"}},
	{Name: "the gateway does not import the REST API", Packages: []string{"internal/gateway"},
		Forbid: []string{"internal/api"}},
	{Name: "the REST API reaches ML only through its narrow interface (api.ML)", Packages: []string{"internal/api"},
		Forbid: []string{"internal/mlbridge"}},
	{Name: "the wire protocol is a standard-library leaf", Packages: []string{"protocol"}, Only: []string{}},
	{Name: "the domain vocabulary depends on nothing but the protocol", Packages: []string{"."},
		Only: []string{"protocol"}},
	{Name: "storage is persistence only", Packages: storage,
		Forbid: join(domain, transport, adapters, []string{"net/http"})},
	{Name: "the public agent stays slim (firmware-sized targets)", Packages: []string{"agent"},
		Only: []string{"protocol", "github.com/coder/websocket/..."}},
	{Name: "the public client depends on no server package (only the shared backoff)", Packages: []string{"client"},
		Only: []string{"protocol", "internal/backoff", "github.com/coder/websocket/..."}},
	{Name: "shared backoff is a standard-library leaf", Packages: []string{"internal/backoff"}, Only: []string{}},
}

// full turns a rule path into an import path pattern.
func full(p string) string {
	switch {
	case p == ".":
		return module
	case p == "net/http", strings.Contains(strings.SplitN(p, "/", 2)[0], "."):
		return p
	}
	return module + "/" + p
}

func matches(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchesAny(patterns []string, path string) bool {
	for _, p := range patterns {
		if matches(full(p), path) {
			return true
		}
	}
	return false
}

func standard(path string) bool { return !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") }

type listedPackage struct {
	ImportPath string
	Imports    []string
}

// modulePackages lists the module's packages with their non-test imports.
func modulePackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// TestImportRules fails naming every import that breaks a rule.
func TestImportRules(t *testing.T) {
	pkgs := modulePackages(t)
	for _, r := range importRules {
		applied := 0
		for _, p := range pkgs {
			if !matchesAny(r.Packages, p.ImportPath) {
				continue
			}
			applied++
			for _, imp := range p.Imports {
				bad := r.Forbid != nil && matchesAny(r.Forbid, imp)
				if r.Only != nil && !standard(imp) && !matchesAny(r.Only, imp) {
					bad = true
				}
				if bad {
					t.Errorf("%s imports %s: breaks the rule %q",
						strings.TrimPrefix(p.ImportPath, module+"/"), imp, r.Name)
				}
			}
		}
		if applied == 0 {
			t.Errorf("rule %q names no existing package (%v): update the rules", r.Name, r.Packages)
		}
	}
}

// TestImportRulesCatch checks the checker: a forbidden import is reported.
func TestImportRulesCatch(t *testing.T) {
	if !matchesAny(domain, module+"/internal/chat") || !matchesAny(join(transport, []string{"net/http"}), "net/http") {
		t.Fatal("rule sets do not match the packages they name")
	}
	if !matchesAny(storage, module+"/internal/store/sqldb") || matchesAny(storage, module+"/internal/storefront") {
		t.Fatal(`"/..." patterns match wrongly`)
	}
}

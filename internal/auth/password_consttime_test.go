package auth_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyUsesConstantTimeCompare guards the comparison of derived keys
// against regressions that no functional test can see: a bytes.Equal or ==
// gives the same answers, only with timing that leaks how much of a guess's
// hash matched. It reads this package's non-test password/hasher sources and
// checks that the derived key in verifyParsed reaches exactly one
// subtle.ConstantTimeCompare and no other comparison, and that no variable-
// time comparison of byte slices appears at all.
func TestVerifyUsesConstantTimeCompare(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var verify *ast.FuncDecl
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || !(strings.HasPrefix(name, "password") || strings.HasPrefix(name, "hasher")) {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Name.Name == "verifyParsed" {
					verify = n
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					switch x.Name + "." + n.Sel.Name {
					case "bytes.Equal", "bytes.Compare", "reflect.DeepEqual", "slices.Equal", "slices.Compare":
						t.Errorf("%s: variable-time comparison %s.%s", fset.Position(n.Pos()), x.Name, n.Sel.Name)
					}
				}
			}
			return true
		})
	}
	if verify == nil {
		t.Fatal("verifyParsed not found")
	}

	var ctCalls, keyUses int
	ast.Inspect(verify.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if isConstantTimeCompare(n) {
				ctCalls++
				if a, ok := n.Args[0].(*ast.Ident); ok && a.Name == "key" {
					keyUses-- // the one sanctioned use
				}
			}
		case *ast.BinaryExpr:
			if n.Op == token.EQL || n.Op == token.NEQ {
				if !isConstantTimeCompare(n.X) {
					t.Errorf("%s: == or != in verifyParsed other than on ConstantTimeCompare's result", fset.Position(n.Pos()))
				}
			}
		case *ast.Ident:
			if n.Name == "key" {
				keyUses++
			}
		}
		return true
	})
	// key appears once where it is assigned and once in ConstantTimeCompare
	// (cancelled above), and nowhere else.
	if ctCalls != 1 || keyUses != 1 {
		t.Fatalf("verifyParsed: %d ConstantTimeCompare calls, derived key used %d times outside it; want 1 and only its assignment", ctCalls, keyUses)
	}
}

// isConstantTimeCompare reports whether e is a call subtle.ConstantTimeCompare(a, b).
func isConstantTimeCompare(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok || len(c.Args) != 2 {
		return false
	}
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "subtle" && sel.Sel.Name == "ConstantTimeCompare"
}

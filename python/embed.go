// Package python embeds Unhidra's ML worker SDK and its built-in models (the
// unhidra_worker Python package, standard library only), so the server can
// write them to a private directory at start and run them with no extra
// files installed.
package python

import (
	"embed"
	"io/fs"
)

// The explicit *.py patterns include __init__.py and __main__.py (a directory
// pattern would skip names starting with '_') and never pick up __pycache__.
//
//go:embed unhidra_worker/*.py
var files embed.FS

// PackageName is the Python package the FS holds; run it with
// `python3 -m unhidra_worker` from the directory it is written to.
const PackageName = "unhidra_worker"

// FS returns the embedded SDK: the directory unhidra_worker and its files.
func FS() fs.FS { return files }

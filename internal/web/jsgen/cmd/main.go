// Command jsgen writes the web app's protocol module; see package jsgen.
// Usage (from internal/web): go run ./jsgen/cmd -protocol ../../protocol -o static/js/protocol.js
package main

import (
	"flag"
	"log"
	"os"

	"github.com/unhidra/unhidra/internal/web/jsgen"
)

func main() {
	dir := flag.String("protocol", "../../protocol", "directory of the Go protocol package")
	out := flag.String("o", "static/js/protocol.js", "module to write")
	flag.Parse()
	src, err := jsgen.Generate(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}

// Command unhidra is the single Unhidra binary: the server, the device agent,
// the terminal chat client, administration and the project's own load tools,
// each as a subcommand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "unhidra: %v\n", err)
		os.Exit(exitCode(err))
	}
}

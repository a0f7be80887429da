// Command unhidra-agent is the Unhidra device agent alone: a small static
// binary for edge devices, without any of the server's dependencies. It
// behaves exactly as `unhidra agent`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/internal/agentcli"
)

// Exit statuses: 2 for a bad command line or configuration, 3 when the
// server ended the session for good (e.g. a revoked key: restarting will
// not help, so a supervisor can stop on it), 1 for anything else.
const (
	exitUsage    = 2
	exitTerminal = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "unhidra-agent: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// run is the whole program: main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := agentcli.NewFlagSet("unhidra-agent", "unhidra-agent --url wss://HOST/ws [flags]", stderr)
	err := agentcli.Run(ctx, fs, args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func exitCode(err error) int {
	var u agentcli.UsageError
	var t *agent.TerminalError
	switch {
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &t):
		return exitTerminal
	}
	return 1
}

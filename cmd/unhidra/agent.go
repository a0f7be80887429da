package main

import (
	"context"
	"errors"

	"github.com/unhidra/unhidra/internal/agentcli"
)

// runAgent is `unhidra agent`: the same program as cmd/unhidra-agent,
// sharing its flags and configuration rules through internal/agentcli.
func runAgent(ctx context.Context, e env, args []string) error {
	fs := agentcli.NewFlagSet("agent", "unhidra agent --url wss://HOST/ws [flags]", e.stderr)
	err := agentcli.Run(ctx, fs, args, e.getenv, e.stderr)
	var u agentcli.UsageError
	if errors.As(err, &u) {
		return usagef("%s", u.Msg)
	}
	return err
}

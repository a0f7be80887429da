package client

import "github.com/unhidra/unhidra/internal/backoff"

// Backoff is an exponential backoff with jitter: Initial, multiplied by
// Factor after each failure, at most Max, each delay spread by ±Jitter
// (see internal/backoff, which the server shares).
type Backoff = backoff.Backoff

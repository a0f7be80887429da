package main

import (
	"flag"
	"io"
	"time"

	"github.com/unhidra/unhidra/internal/cliconf"
)

// Configuration comes from flags, UNHIDRA_* environment variables and an
// optional config file, in that order, under one set of names: see
// internal/cliconf.

// parseFlags parses args, then fills unset flags from the environment and
// the config file. fs must define a "config" flag. Positional arguments are
// refused: only admin takes them (parseFlagsAndArgs).
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := parseFlagsAndArgs(fs, args, getenv); err != nil {
		return err
	}
	return noArgs(fs)
}

// parseFlagsAndArgs is parseFlags leaving positional arguments in fs.
func parseFlagsAndArgs(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	return cliconf.Parse(fs, args, getenv)
}

// noArgs refuses positional arguments left after the flags.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// durationRange checks a duration setting.
func durationRange(name string, d, min, max time.Duration) error {
	if d < min || d > max {
		return usagef("--%s must be between %v and %v, got %v", name, min, max, d)
	}
	return nil
}

// floatRange checks a floating-point setting.
func floatRange(name string, v, min, max float64) error {
	if !(v >= min && v <= max) { // also false for NaN
		return usagef("--%s must be between %g and %g, got %g", name, min, max, v)
	}
	return nil
}

// intRange checks an integer setting.
func intRange(name string, v, min, max int) error {
	if v < min || v > max {
		return usagef("--%s must be between %d and %d, got %d", name, min, max, v)
	}
	return nil
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage with the environment-variable names.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	return cliconf.NewFlagSet(name, "unhidra "+synopsis, "", stderr)
}

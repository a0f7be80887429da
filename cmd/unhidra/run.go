package main

import (
	"github.com/unhidra/unhidra/internal/cliconf"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// it is read from the module build info.
var version = ""

// commit and buildDate are the fallbacks for the VCS stamp of the build
// info, which go build leaves out where it cannot read the checkout (e.g.
// a git worktree, or -buildvcs=false); scripts/image.sh and make release
// set them with -ldflags "-X main.commit=… -X main.buildDate=…".
var commit, buildDate = "", ""

// env bundles what a subcommand receives from the process, so tests can run
// the whole program in-process with their own environment and streams.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the server (API, gateway, messaging, devices, ML, web UI)", runServe},
		{"admin", "manage users, devices and keys from the command line", runAdmin},
		{"agent", "run the device agent (as cmd/unhidra-agent)", runAgent},
		{"chat", "a terminal chat client", runChat},
		{"bench", "the project's load tools (connections, fan-out, fleets)", runBench},
		{"device", "device tools: `device check`, the conformance check of a firmware", runDevice},
		{"version", "print the version", runVersion},
	}
}

// usageError marks errors caused by the command line or configuration;
// they exit with 2.
type usageError = cliconf.UsageError

func usagef(format string, args ...any) error { return cliconf.Usagef(format, args...) }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// run is the whole program: main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) < 2 {
		printUsage(stderr)
		return usagef("no command given")
	}
	name, rest := args[1], args[2:]
	switch name {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, e, rest)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
	}
	printUsage(stderr)
	return usagef("unknown command %q", name)
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Usage: unhidra <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'unhidra <command> --help' for a command's flags.\n")
	io.WriteString(w, b.String())
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func runVersion(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	info := readBuildInfo()
	fmt.Fprintf(e.stdout, "unhidra %s\ncommit: %s\nbuilt: %s\ngo: %s %s\n", info.version, info.commit, info.date, info.goVersion, info.platform)
	return nil
}

// buildInfo is what the binary knows about its own build.
type buildInfo struct {
	version, commit, date, goVersion, platform string
}

// readBuildInfo reads the version (ldflags, else the module version), the
// VCS commit and its time (stamped by go build in a checkout; "+dirty"
// when the tree had changes), and the toolchain.
func readBuildInfo() buildInfo {
	info := buildInfo{version: buildVersion(), commit: "unknown", date: "unknown", goVersion: runtime.Version(),
		platform: runtime.GOOS + "/" + runtime.GOARCH}
	if commit != "" {
		info.commit = commit
	}
	if buildDate != "" {
		info.date = buildDate
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	var arm string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.commit = s.Value
		case "vcs.time":
			info.date = s.Value
		case "GOARM":
			arm = s.Value
		}
	}
	for _, s := range bi.Settings { // after the loop above: settings come in any order
		if s.Key == "vcs.modified" && s.Value == "true" && info.commit != "unknown" {
			info.commit += "+dirty"
		}
	}
	if arm != "" && runtime.GOARCH == "arm" {
		info.platform += "v" + arm
	}
	return info
}

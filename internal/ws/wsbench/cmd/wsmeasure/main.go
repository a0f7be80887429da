// Command wsmeasure measures the idle memory per WebSocket connection of
// ws.Engine (or of a goroutine-per-connection baseline), with the clients in
// a second process (this same executable, started with "client"):
//
//	go run ./internal/ws/wsbench/cmd/wsmeasure -n 10000 [-tls] [-server engine|coder] [-warmup 1024]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"time"

	"github.com/unhidra/unhidra/internal/ws/wsbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wsmeasure:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "client" {
		cc, err := wsbench.ParseClientArgs(args[1:])
		if err != nil {
			return err
		}
		return wsbench.RunClient(cc, stdin, stdout)
	}
	fs := flag.NewFlagSet("wsmeasure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 10000, "idle connections (each costs one file descriptor in each process)")
	useTLS := fs.Bool("tls", false, "serve over TLS")
	server := fs.String("server", string(wsbench.ServerEngine), "engine (ws.Engine) or coder (coder/websocket, goroutine per connection)")
	settle := fs.Duration("settle", 2*time.Second, "wait with all connections open before measuring")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after")
	warmup := fs.Int("warmup", 0, "bytes of one message each client sends (and gets an answer to) before idling")
	memprofile := fs.String("memprofile", "", "write a heap profile taken with all connections idle to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server != string(wsbench.ServerEngine) && *server != string(wsbench.ServerCoder) {
		return errors.New("-server must be engine or coder")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var profile io.Writer
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		profile = f
	}
	res, err := wsbench.MeasureIdle(ctx, wsbench.MeasureConfig{
		HeapProfile: profile,
		Conns:       *n,
		TLS:         *useTLS,
		Server:      wsbench.Server(*server),
		WarmupBytes: *warmup,
		Settle:      *settle,
		StartClient: func(a []string) *exec.Cmd {
			return exec.Command(self, append([]string{"client"}, a...)...)
		},
		Log: slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s go=%s cpus=%d elapsed=%s\n", res, runtime.Version(), runtime.NumCPU(), res.Elapsed.Round(time.Millisecond))
	return nil
}

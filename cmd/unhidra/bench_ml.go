package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// runBenchML is `unhidra bench ml`: sequential round trips, either to the
// inference API (POST /api/v1/ml/infer, one call at a time, paced) or, with
// --unix, to a bare length-prefixed echo server on a Unix socket (the floor an
// API call is compared with). Both modes send the same JSON input and pace the
// same way, so their latency distributions are comparable.
func runBenchML(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("bench ml", "bench ml (--user NAME[,NAME...] --model M | --unix SOCKET) [flags]", e.stderr)
	var t benchTarget
	t.flags(fs)
	model := fs.String("model", "echo", "model to call")
	unixPath := fs.String("unix", "", "measure a bare length-prefixed echo server on this Unix socket instead of the API")
	n := fs.Int("n", 200, "round trips to measure")
	warmup := fs.Int("warmup", 10, "round trips before measuring")
	interval := fs.Duration("interval", 25*time.Millisecond, "time between the starts of two round trips (0: back to back)")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
	cpuPIDs := fs.String("cpu-pid", "", "comma-separated process ids (e.g. the server, or the echo server) whose CPU time, with their child processes', is reported per measured round trip (Linux)")
	fs.String("config", "", "config file")
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := intRange("n", *n, 1, 100000); err != nil {
		return err
	}
	if err := intRange("warmup", *warmup, 0, 10000); err != nil {
		return err
	}
	pids, err := parsePIDs(*cpuPIDs)
	if err != nil {
		return err
	}
	input := []byte(`{"msg":"ping","n":1}`)
	var call func(context.Context) error
	var inner []float64 // the server's own timing of each API call's Infer, ms
	if *unixPath != "" {
		c, err := net.Dial("unix", *unixPath)
		if err != nil {
			return fmt.Errorf("dial %s: %w", *unixPath, err)
		}
		defer c.Close()
		call = bareEcho(c, input)
	} else {
		f, err := apiInfer(ctx, e, t, *model, input, func(ms float64) { inner = append(inner, ms) })
		if err != nil {
			return err
		}
		call = f
	}
	lat := make([]time.Duration, 0, *n)
	cpu0 := make([]time.Duration, len(pids))
	var self0 time.Duration
	next := time.Now()
	for i := 0; i < *warmup+*n; i++ {
		if i == *warmup { // the measured window starts
			for k, pid := range pids {
				if cpu0[k], err = procCPU(pid); err != nil {
					return fmt.Errorf("--cpu-pid: %w", err)
				}
			}
			self0 = selfCPU()
		}
		if *interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
			next = next.Add(*interval)
		}
		start := time.Now()
		if err := call(ctx); err != nil {
			return fmt.Errorf("round trip %d: %w", i+1, err)
		}
		if i >= *warmup {
			lat = append(lat, time.Since(start))
		} else if len(inner) > 0 {
			inner = inner[:0]
		}
	}
	perCall := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(len(lat)) }
	var cpus []float64
	for k, pid := range pids {
		c, err := procCPU(pid)
		if err != nil {
			return fmt.Errorf("--cpu-pid: %w", err)
		}
		cpus = append(cpus, perCall(c-cpu0[k]))
	}
	client := perCall(selfCPU() - self0)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
	res := map[string]any{"mode": "api", "n": len(lat), "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99),
		"max_ms": ms(lat[len(lat)-1]), "interval_ms": ms(*interval)}
	if *unixPath != "" {
		res["mode"] = "unix"
	}
	if len(inner) > 0 {
		// The server's own timing of the call to the worker (the response's
		// duration_ms): the rest of the API round trip is HTTP, auth and JSON.
		slices.Sort(inner)
		res["infer_p50_ms"] = inner[len(inner)/2]
	}
	if len(pids) > 0 {
		// CPU µs per measured round trip of each given process tree.
		res["cpu_us_per_call"] = cpus
	}
	if client > 0 {
		res["client_cpu_us_per_call"] = client
	}
	if *jsonOut {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	fmt.Fprintf(e.stdout, "%s round trips=%d p50=%.3fms p90=%.3fms p99=%.3fms max=%.3fms client_cpu=%.0fµs/call",
		res["mode"], len(lat), res["p50_ms"], res["p90_ms"], res["p99_ms"], res["max_ms"], client)
	if v, ok := res["infer_p50_ms"]; ok {
		fmt.Fprintf(e.stdout, " infer_p50=%.3fms", v)
	}
	for k, c := range cpus {
		fmt.Fprintf(e.stdout, " pid%d_cpu=%.0fµs/call", pids[k], c)
	}
	fmt.Fprintln(e.stdout)
	return nil
}

// bareEcho returns a round trip over c: a 4-byte big-endian length, the body,
// and the same back.
func bareEcho(c net.Conn, body []byte) func(context.Context) error {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	out = append(out, body...)
	in := make([]byte, len(out))
	return func(context.Context) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(out); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return err
		}
		if !bytes.Equal(in, out) {
			return fmt.Errorf("echo differs")
		}
		return nil
	}
}

// apiInfer signs in as each of the comma-separated users (the API limits
// inference per user) and returns a round trip that calls the model as the
// next user in turn.
func apiInfer(ctx context.Context, e env, t benchTarget, model string, input []byte, took func(ms float64)) (func(context.Context) error, error) {
	tlsCfg, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 4}}
	var tokens []string
	for _, u := range strings.Split(t.user, ",") {
		one := t
		one.user = strings.TrimSpace(u)
		tok, err := one.login(ctx, e, client)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, tok)
	}
	body, _ := json.Marshal(map[string]any{"model": model, "input": json.RawMessage(input)})
	i := 0
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, "POST", t.url+"/api/v1/ml/infer", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
		i++
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", res.Status, b)
		}
		var out struct {
			DurationMs *float64 `json:"duration_ms"`
		}
		if json.Unmarshal(b, &out) == nil && out.DurationMs != nil {
			took(*out.DurationMs)
		}
		return nil
	}, nil
}

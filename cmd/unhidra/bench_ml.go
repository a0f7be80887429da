package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
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
	httpClient := fs.String("http-client", "std", "API client: std (net/http) or raw (one kept-alive connection, each request one write and its response read in the calling goroutine, as the bare mode does)")
	cpuPIDs := fs.String("cpu-pid", "", "comma-separated process ids (e.g. the server, or the echo server) whose CPU time, with their child processes', is reported per measured round trip (Linux)")
	fs.String("config", "", "config file")
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	if err := intRange("n", *n, 1, 100000); err != nil {
		return err
	}
	if err := intRange("warmup", *warmup, 0, 10000); err != nil {
		return err
	}
	if *httpClient != "std" && *httpClient != "raw" {
		return usagef("--http-client %q: want std or raw", *httpClient)
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
		f, err := apiInfer(ctx, e, t, *model, input, *httpClient == "raw", func(ms float64) { inner = append(inner, ms) })
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
// next user in turn, with net/http's client or, when raw is set, over one
// kept-alive connection written and read by the caller itself.
func apiInfer(ctx context.Context, e env, t benchTarget, model string, input []byte, raw bool, took func(ms float64)) (func(context.Context) error, error) {
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
	var rc *rawHTTP
	if raw {
		if rc, err = newRawHTTP(t.url, tlsCfg); err != nil {
			return nil, err
		}
	}
	i := 0
	return func(ctx context.Context) error {
		tok := tokens[i%len(tokens)]
		i++
		var status int
		var b []byte
		if rc != nil {
			status, b, err = rc.post(ctx, "/api/v1/ml/infer", tok, body)
		} else {
			status, b, err = stdPost(ctx, client, t.url+"/api/v1/ml/infer", tok, body)
		}
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("%d %s: %s", status, http.StatusText(status), b)
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

func stdPost(ctx context.Context, client *http.Client, url, tok string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}

// rawHTTP is a minimal HTTP/1.1 client for the benchmark: one connection,
// kept alive, each request written with one Write and its response parsed
// (http.ReadResponse) in the calling goroutine. net/http's Transport reads
// and writes on goroutines of its own, two hand-offs per request that are
// the client's cost, not the server's; this client pays none, like the bare
// mode's, so the two modes compare the servers.
type rawHTTP struct {
	host, addr string
	tlsCfg     *tls.Config
	nc         net.Conn
	r          *bufio.Reader
	req        []byte
}

func newRawHTTP(base string, tlsCfg *tls.Config) (*rawHTTP, error) {
	u, err := neturl.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--url %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	c := &rawHTTP{host: u.Host, addr: u.Host}
	if u.Port() == "" {
		c.addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	if u.Scheme == "https" {
		c.tlsCfg = tlsCfg.Clone()
		c.tlsCfg.ServerName = u.Hostname()
	}
	return c, nil
}

func (c *rawHTTP) dial(ctx context.Context) error {
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	if c.tlsCfg != nil {
		tc := tls.Client(nc, c.tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	c.nc, c.r = nc, bufio.NewReader(nc)
	return nil
}

// post sends one request and returns the status and at most 1 MiB of the
// body. A connection the server closed is redialled once.
func (c *rawHTTP) post(ctx context.Context, path, tok string, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		fresh := c.nc == nil
		if fresh {
			if err := c.dial(ctx); err != nil {
				return 0, nil, err
			}
		}
		c.req = fmt.Appendf(c.req[:0], "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, c.host, tok, len(body))
		c.req = append(c.req, body...)
		c.nc.SetDeadline(time.Now().Add(30 * time.Second))
		status, b, keep, err := c.exchange()
		if err != nil || !keep {
			c.nc.Close()
			c.nc = nil
		}
		if err != nil && !fresh && attempt == 0 {
			continue // the server closed an idle connection: once more on a new one
		}
		return status, b, err
	}
}

func (c *rawHTTP) exchange() (status int, body []byte, keep bool, err error) {
	if _, err := c.nc.Write(c.req); err != nil {
		return 0, nil, false, err
	}
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, nil, false, err
	}
	body, err = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	return res.StatusCode, body, err == nil && !res.Close, err
}

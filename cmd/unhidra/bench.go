package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/unhidra/unhidra/internal/loadtest"
	"github.com/unhidra/unhidra/protocol"
)

const benchSynopsis = `bench <tool> [flags]

Tools:
  conns   open N idle authenticated WebSocket connections and report the server's memory per connection
  fanout  post to a channel at a fixed rate with M listeners and report throughput and latency
  fleet   simulate N devices speaking the seed firmware's protocol (one device key each)
  ml      paced round trips to the inference API (or, with --unix, to a bare Unix-socket echo) and their latency`

// runBench runs one of the project's load tools against a running server.
func runBench(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(e.stderr, "Usage: unhidra %s\n", benchSynopsis)
		if len(args) == 0 {
			return usagef("bench: missing tool")
		}
		return nil
	}
	switch args[0] {
	case "conns":
		return runBenchConns(ctx, e, args[1:])
	case "fanout":
		return runBenchFanout(ctx, e, args[1:])
	case "fleet":
		return runBenchFleet(ctx, e, args[1:])
	case "ml":
		return runBenchML(ctx, e, args[1:])
	}
	return usagef("bench: unknown tool %q", args[0])
}

// benchTarget is how bench tools reach and authenticate to a server.
type benchTarget struct {
	url, caFile, user string
}

func (b *benchTarget) flags(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&b.url, "url", "https://127.0.0.1:8443", "the server's base URL")
	fs.StringVar(&b.caFile, "ca-file", "", "CA certificate (PEM) to trust, e.g. DATA/tls-cert.pem of a self-signed server")
	fs.StringVar(&b.user, "user", "", "account to sign in as (password from UNHIDRA_BENCH_PASSWORD or standard input)")
}

func (b *benchTarget) tlsConfig() (*tls.Config, error) {
	if b.caFile == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	pemBytes, err := os.ReadFile(b.caFile)
	if err != nil {
		return nil, fmt.Errorf("read --ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, usagef("--ca-file %s holds no PEM certificate", b.caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// session is a signed-in bench run's view of the server.
type session struct {
	http  *http.Client
	token string
	wsURL string
	wsTLS *tls.Config // nil for ws://
}

// connect builds the HTTP client, signs in, and derives the WebSocket URL.
// Close the session's idle connections when done.
func (b *benchTarget) connect(ctx context.Context, e env) (*session, error) {
	tlsCfg, err := b.tlsConfig()
	if err != nil {
		return nil, err
	}
	httpClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	token, err := b.login(ctx, e, httpClient)
	if err != nil {
		httpClient.CloseIdleConnections()
		return nil, err
	}
	s := &session{http: httpClient, token: token, wsURL: "ws" + strings.TrimPrefix(b.url, "http") + "/ws"}
	if strings.HasPrefix(b.url, "https://") {
		s.wsTLS = tlsCfg
	}
	return s, nil
}

// login signs in and returns an access token.
func (b *benchTarget) login(ctx context.Context, e env, client *http.Client) (string, error) {
	if b.user == "" {
		return "", usagef("--user is required")
	}
	pw := e.getenv("UNHIDRA_BENCH_PASSWORD")
	if pw == "" {
		line, _ := io.ReadAll(io.LimitReader(e.stdin, 4096))
		pw = strings.TrimRight(string(line), "\r\n")
	}
	body, _ := json.Marshal(map[string]string{"name": b.user, "password": pw})
	req, err := http.NewRequestWithContext(ctx, "POST", b.url+"/api/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", usagef("--url: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("sign in: %w", err)
	}
	defer res.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       struct{ Message string }
	}
	json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&out)
	if res.StatusCode != 200 || out.AccessToken == "" {
		return "", fmt.Errorf("sign in as %s: %s %s", b.user, res.Status, out.Error.Message)
	}
	return out.AccessToken, nil
}

func runBenchConns(ctx context.Context, e env, args []string) error {
	var target benchTarget
	fs := newFlagSet("bench conns", "bench conns --user NAME [flags]", e.stderr)
	target.flags(fs)
	n := fs.Int("n", 1000, "connections to open (at most 19,000 per process)")
	sources := fs.Int("source-addrs", 4, "spread connections over 127.0.0.1 … 127.0.0.N")
	rate := fs.Float64("rate", 0, "connections per second (0: as fast as 64 handshakes in flight allow)")
	hold := fs.Duration("hold", 10*time.Second, "keep the connections open this long before measuring (a forced GC runs every 2 minutes)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 19_000 {
		return usagef("-n must be 1 to 19,000")
	}
	if *hold < 0 || *hold > time.Hour {
		return usagef("--hold must be between 0 and 1h")
	}
	sess, err := target.connect(ctx, e)
	if err != nil {
		return err
	}
	defer sess.http.CloseIdleConnections()
	res, err := loadtest.Conns(ctx, loadtest.ConnsOptions{
		URL: sess.wsURL, Subprotocols: []string{protocol.Subprotocol, protocol.BearerPrefix + sess.token},
		N: *n, SourceAddrs: *sources, TLS: sess.wsTLS, Rate: *rate, Hold: *hold,
		MetricsURL: target.url + "/metrics", MetricsHTTP: sess.http, Progress: e.stderr,
		Settle: func(ctx context.Context) error { return freeServerMemory(ctx, sess.http, target.url, sess.token) },
	})
	if err != nil && res.Connected == 0 {
		return err
	}
	rss, heap, stack := res.PerConn()
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{
			"connected": res.Connected, "failed": res.Failed, "dropped": res.Dropped, "first_error": res.FirstError,
			"elapsed_seconds": res.Elapsed.Seconds(), "handshake_p50_ms": ms(res.Handshake[0]), "handshake_p99_ms": ms(res.Handshake[2]),
			"server_rss_per_conn": rss, "server_heap_per_conn": heap, "server_stack_per_conn": stack,
			"before": res.Before, "after": res.After,
		})
	}
	fmt.Fprintf(e.stdout, "connected %d, failed %d, dropped during hold %d, in %v (%.0f/s)\n",
		res.Connected, res.Failed, res.Dropped, res.Elapsed.Round(time.Millisecond), float64(res.Connected)/res.Elapsed.Seconds())
	if res.FirstError != "" {
		fmt.Fprintf(e.stdout, "first error: %s\n", res.FirstError)
	}
	fmt.Fprintf(e.stdout, "handshake p50 %v, p90 %v, p99 %v, max %v\n", res.Handshake[0], res.Handshake[1], res.Handshake[2], res.Handshake[3])
	fmt.Fprintf(e.stdout, "server per connection: RSS %.1f KiB, heap in use %.1f KiB, stacks %.1f KiB (goroutines %.0f → %.0f)\n",
		rss/1024, heap/1024, stack/1024, res.Before.Goroutines, res.After.Goroutines)
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// freeServerMemory asks the server to collect garbage (administrators
// only), so memory samples measure live memory.
func freeServerMemory(ctx context.Context, client *http.Client, baseURL, token string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", baseURL+"/api/v1/admin/debug/free-memory", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("free server memory: %w", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("free server memory: %s (the bench user must be an administrator)", res.Status)
	}
	return nil
}

// runBenchFanout measures stored-and-delivered throughput and latency: one
// account holds every connection (raise the server's per-identity caps and
// send rate for large runs).
func runBenchFanout(ctx context.Context, e env, args []string) error {
	var target benchTarget
	fs := newFlagSet("bench fanout", "bench fanout --user NAME [flags]", e.stderr)
	target.flags(fs)
	receivers := fs.Int("receivers", 100, "listening connections")
	senders := fs.Int("senders", 4, "posting connections")
	rate := fs.Float64("rate", 200, "messages per second in all")
	duration := fs.Duration("duration", 10*time.Second, "how long to post")
	sources := fs.Int("source-addrs", 4, "spread connections over 127.0.0.1 … 127.0.0.N")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 || *duration > time.Hour || *rate <= 0 || *rate > 1e6 {
		return usagef("--duration must be (0, 1h] and --rate (0, 1e6]")
	}
	sess, err := target.connect(ctx, e)
	if err != nil {
		return err
	}
	defer sess.http.CloseIdleConnections()
	// A fresh channel, so that nobody else's messages interfere.
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	body, _ := json.Marshal(map[string]any{"name": name, "private": true})
	req, _ := http.NewRequestWithContext(ctx, "POST", target.url+"/api/v1/channels", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+sess.token)
	res, err := sess.http.Do(req)
	if err != nil {
		return fmt.Errorf("create channel: %w", err)
	}
	var ch struct{ ID string }
	json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&ch)
	res.Body.Close()
	if res.StatusCode != 201 || ch.ID == "" {
		return fmt.Errorf("create channel: %s", res.Status)
	}
	r, err := loadtest.Fanout(ctx, loadtest.FanoutOptions{
		URL: sess.wsURL, Subprotocols: []string{protocol.Subprotocol, protocol.BearerPrefix + sess.token},
		TLS: sess.wsTLS, Channel: ch.ID, Receivers: *receivers, Senders: *senders, Rate: *rate, Duration: *duration, SourceAddrs: *sources,
	})
	if err != nil {
		return err
	}
	secs := duration.Seconds()
	fmt.Fprintf(e.stdout, "sent %d, acked (stored) %d, failed %d: %.0f stored messages/s\n", r.Sent, r.Acked, r.Failed, float64(r.Acked)/secs)
	fmt.Fprintf(e.stdout, "deliveries %d to %d listeners: %.0f deliveries/s (%.1f%% of expected)\n", r.Deliveries, *receivers,
		float64(r.Deliveries)/secs, 100*float64(r.Deliveries)/float64(max(1, r.Acked**receivers)))
	fmt.Fprintf(e.stdout, "ack latency p50 %v, p99 %v, max %v\n", r.AckLatency[0], r.AckLatency[1], r.AckLatency[2])
	fmt.Fprintf(e.stdout, "delivery latency p50 %v, p99 %v, max %v\n", r.DeliveryLatency[0], r.DeliveryLatency[1], r.DeliveryLatency[2])
	return nil
}

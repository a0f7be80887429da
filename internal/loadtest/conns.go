package loadtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ConnsOptions configures Conns.
type ConnsOptions struct {
	URL          string // ws:// or wss://…/ws
	Subprotocols []string
	N            int         // connections to open
	SourceAddrs  int         // spread over 127.0.0.1 … 127.0.0.<SourceAddrs> (loopback only)
	TLS          *tls.Config // for wss://
	Rate         float64     // connections per second; 0 = as fast as Concurrency allows
	Concurrency  int         // handshakes in flight; default 64
	Hold         time.Duration
	MetricsURL   string // the server's /metrics, scraped before and after
	MetricsHTTP  *http.Client
	// Settle, if set, runs before each memory sample (e.g. asks the server
	// to collect garbage, so samples compare live memory).
	Settle   func(ctx context.Context) error
	Progress io.Writer // a line per 1,000 connections; may be nil
}

// ConnsResult reports what opening the connections cost.
type ConnsResult struct {
	Connected, Failed int
	FirstError        string
	Handshake         []time.Duration // p50, p90, p99, max
	Elapsed           time.Duration
	Before, After     MemSample
	Dropped           int // connections the server closed during the hold
}

// PerConn returns the server's memory growth per connection.
func (r ConnsResult) PerConn() (rss, heap, stack float64) {
	if r.Connected == 0 {
		return 0, 0, 0
	}
	n := float64(r.Connected)
	return (r.After.RSS - r.Before.RSS) / n, (r.After.HeapInuse - r.Before.HeapInuse) / n, (r.After.StackInuse - r.Before.StackInuse) / n
}

// Conns opens opts.N idle connections, keeps them open (reading, so pings
// are answered) for opts.Hold, samples the server's memory before and after,
// and closes them all. It stops early when ctx ends.
func Conns(ctx context.Context, opts ConnsOptions) (ConnsResult, error) {
	var res ConnsResult
	if opts.N <= 0 || opts.N > 19_000 {
		return res, fmt.Errorf("connections must be 1 to 19,000 per process (the open-file limit is 20,000), got %d", opts.N)
	}
	if opts.SourceAddrs <= 0 || opts.SourceAddrs > 250 {
		opts.SourceAddrs = 1
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	sample := func(ctx context.Context) (MemSample, error) {
		if opts.Settle != nil {
			if err := opts.Settle(ctx); err != nil {
				return MemSample{}, err
			}
		}
		return ScrapeMemory(ctx, opts.MetricsHTTP, opts.MetricsURL)
	}
	if opts.MetricsURL != "" {
		var err error
		if res.Before, err = sample(ctx); err != nil {
			return res, err
		}
	}
	clients := make([]*http.Client, opts.SourceAddrs)
	for i := range clients {
		clients[i] = &http.Client{Transport: transportFrom(net.IPv4(127, 0, 0, byte(i+1)), opts.TLS)}
	}
	connCtx, stopConns := context.WithCancel(ctx)
	defer stopConns()
	var (
		mu        sync.Mutex
		conns     []*websocket.Conn
		latencies []time.Duration
		failed    atomic.Int64
		dropped   atomic.Int64
		firstErr  atomic.Value
		readers   sync.WaitGroup
	)
	jobs := make(chan int)
	var dialers sync.WaitGroup
	start := time.Now()
	for range opts.Concurrency {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range jobs {
				t0 := time.Now()
				dctx, cancel := context.WithTimeout(connCtx, 30*time.Second)
				c, _, err := websocket.Dial(dctx, opts.URL, &websocket.DialOptions{HTTPClient: clients[i%len(clients)], Subprotocols: opts.Subprotocols})
				if err == nil {
					_, _, err = c.Read(dctx) // the welcome frame
				}
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					if c != nil {
						c.CloseNow()
					}
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				latencies = append(latencies, time.Since(t0))
				n := len(conns)
				mu.Unlock()
				if opts.Progress != nil && n%1000 == 0 {
					fmt.Fprintf(opts.Progress, "%d connected (%d failed) after %v\n", n, failed.Load(), time.Since(start).Round(time.Millisecond))
				}
				readers.Add(1)
				go func() {
					defer readers.Done()
					// Reading answers the server's pings; an error before we
					// stop means the server dropped us.
					for {
						if _, _, err := c.Read(connCtx); err != nil {
							if connCtx.Err() == nil {
								dropped.Add(1)
							}
							return
						}
					}
				}()
			}
		}()
	}
	var tick <-chan time.Time
	if opts.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / opts.Rate))
		defer t.Stop()
		tick = t.C
	}
feed:
	for i := range opts.N {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	dialers.Wait()
	res.Elapsed = time.Since(start)
	res.Connected, res.Failed = len(conns), int(failed.Load())
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	res.Handshake = Percentiles(latencies, 50, 90, 99, 100)

	select {
	case <-time.After(opts.Hold):
	case <-ctx.Done():
	}
	var scrapeErr error
	if opts.MetricsURL != "" {
		res.After, scrapeErr = sample(context.WithoutCancel(ctx))
	}
	res.Dropped = int(dropped.Load())
	stopConns()
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
	for _, cl := range clients {
		cl.CloseIdleConnections()
	}
	if res.Connected == 0 {
		return res, errors.Join(fmt.Errorf("no connection succeeded: %s", res.FirstError), scrapeErr)
	}
	return res, scrapeErr
}

// transportFrom dials from a given loopback source address, so that more
// than ~28,000 connections (one address's ephemeral ports) can be opened
// across processes and the server's per-address limits can be exercised.
func transportFrom(src net.IP, tlsCfg *tls.Config) *http.Transport {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: -1}
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg.Clone()
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return tr
}

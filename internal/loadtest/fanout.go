package loadtest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/unhidra/unhidra/protocol"
)

// FanoutOptions configures Fanout.
type FanoutOptions struct {
	URL          string // ws:// or wss://…/ws
	Subprotocols []string
	TLS          *tls.Config
	Channel      string // conversation every connection is a member of
	Receivers    int    // connections that only listen
	Senders      int    // connections that post
	Rate         float64
	Duration     time.Duration
	SourceAddrs  int
}

// FanoutResult is what Fanout measured.
type FanoutResult struct {
	Sent, Acked, Failed int
	Deliveries          int64
	Elapsed             time.Duration
	AckLatency          []time.Duration // p50, p99, max
	DeliveryLatency     []time.Duration // p50, p99, max
}

// Fanout opens the connections, posts Rate messages per second in all
// for Duration, and measures the time from sending to the ack (stored)
// and to each receiver (delivered). Message bodies carry the send time.
func Fanout(ctx context.Context, o FanoutOptions) (FanoutResult, error) {
	var res FanoutResult
	if o.Receivers < 1 || o.Senders < 1 || o.Receivers+o.Senders > 19_000 {
		return res, fmt.Errorf("receivers and senders must be at least 1 and 19,000 in all")
	}
	if o.Rate <= 0 || o.Duration <= 0 {
		return res, fmt.Errorf("rate and duration must be positive")
	}
	o.SourceAddrs = min(max(o.SourceAddrs, 1), 250)
	clients := make([]*http.Client, o.SourceAddrs)
	for i := range clients {
		clients[i] = &http.Client{Transport: transportFrom(net.IPv4(127, 0, 0, byte(i+1)), o.TLS)}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	dial := func(i int) (*websocket.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(dctx, o.URL, &websocket.DialOptions{HTTPClient: clients[i%len(clients)], Subprotocols: o.Subprotocols})
		if err != nil {
			return nil, err
		}
		c.SetReadLimit(1 << 20)
		return c, nil
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	defer func() {
		stop()
		for _, c := range conns {
			c.CloseNow()
		}
		wg.Wait()
	}()

	// Receivers record the latency of every bench message they see.
	var deliveries atomic.Int64
	var latMu sync.Mutex
	var delivered []time.Duration
	for i := range o.Receivers {
		c, err := dial(i)
		if err != nil {
			return res, fmt.Errorf("receiver %d: %w", i, err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			defer func() { latMu.Lock(); delivered = append(delivered, local...); latMu.Unlock() }()
			for {
				_, data, err := c.Read(runCtx)
				if err != nil {
					return
				}
				if sent, ok := benchStamp(data, o.Channel); ok {
					local = append(local, time.Since(sent))
					deliveries.Add(1)
				}
			}
		}()
	}

	// Senders post at their share of the rate and wait for acks.
	var sent, acked, failed atomic.Int64
	var ackMu sync.Mutex
	var ackLat []time.Duration
	start := time.Now()
	deadline := start.Add(o.Duration)
	for i := range o.Senders {
		c, err := dial(o.Receivers + i)
		if err != nil {
			return res, fmt.Errorf("sender %d: %w", i, err)
		}
		conns = append(conns, c)
		pending := sync.Map{} // id → send time
		wg.Add(2)
		go func() { // reads acks
			defer wg.Done()
			for {
				_, data, err := c.Read(runCtx)
				if err != nil {
					return
				}
				var f struct{ Type, ID string }
				if json.Unmarshal(data, &f) != nil || f.ID == "" {
					continue
				}
				if t0, ok := pending.LoadAndDelete(f.ID); ok {
					if f.Type == protocol.TypeAck {
						acked.Add(1)
						ackMu.Lock()
						ackLat = append(ackLat, time.Since(t0.(time.Time)))
						ackMu.Unlock()
					} else {
						failed.Add(1)
					}
				}
			}
		}()
		go func() { // writes at the rate
			defer wg.Done()
			every := time.Duration(float64(time.Second) * float64(o.Senders) / o.Rate)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 0; time.Now().Before(deadline); n++ {
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
				now := time.Now()
				id := "b" + strconv.Itoa(i) + "-" + strconv.Itoa(n)
				body := "bench " + strconv.FormatInt(now.UnixNano(), 10)
				frame, _ := json.Marshal(map[string]string{"type": protocol.TypeSend, "id": id, "channel": o.Channel, "body": body})
				pending.Store(id, now)
				wctx, cancel := context.WithTimeout(runCtx, 10*time.Second)
				err := c.Write(wctx, websocket.MessageText, frame)
				cancel()
				if err != nil {
					failed.Add(1)
					return
				}
				sent.Add(1)
			}
		}()
	}
	// Let the last messages arrive, then stop.
	select {
	case <-time.After(time.Until(deadline) + 2*time.Second):
	case <-ctx.Done():
	}
	res.Elapsed = time.Since(start)
	stop()
	for _, c := range conns {
		c.CloseNow()
	}
	wg.Wait()
	conns = nil
	res.Sent, res.Acked, res.Failed = int(sent.Load()), int(acked.Load()), int(failed.Load())
	res.Deliveries = deliveries.Load()
	res.AckLatency = Percentiles(ackLat, 50, 99, 100)
	res.DeliveryLatency = Percentiles(delivered, 50, 99, 100)
	return res, nil
}

// benchStamp reads the send time out of a bench message frame.
func benchStamp(data []byte, channel string) (time.Time, bool) {
	var m struct{ Type, Channel, Body string }
	if json.Unmarshal(data, &m) != nil || m.Type != protocol.TypeMessage || m.Channel != channel || !strings.HasPrefix(m.Body, "bench ") {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(strings.TrimPrefix(m.Body, "bench "), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

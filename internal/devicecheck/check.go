// Package devicecheck is the conformance check of device firmware
// (`unhidra device check`): a probe endpoint with its own TLS certificate
// and test key that waits for a device, drives it through a schedule
// (heartbeats, a command, forced closes, a terminal close) and judges what
// it did against the device protocol, one rule at a time.
package devicecheck

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/tlscert"
	"github.com/unhidra/unhidra/protocol"
)

// Results of a rule.
const (
	Pass        = "pass"
	Fail        = "fail"
	NotObserved = "not_observed"
)

// Rule is one judged rule.
type Rule struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
	Result   string `json:"result"`
	Measured string `json:"measured"`
	Expected string `json:"expected"`
}

// Report is the check's outcome.
type Report struct {
	Rules  []Rule `json:"rules"`
	Passed bool   `json:"passed"` // every required rule passed
}

// Config is the check's schedule. Zero fields get the seed firmware's
// values (Defaults).
type Config struct {
	Listen            string        // host:port; default 127.0.0.1:8443
	DeviceID          string        // told in welcome; default dev_check
	HeartbeatInterval time.Duration // told in welcome and checked (±10 %)
	PingInterval      time.Duration // told in welcome; pings must come at least this often (+10 %)
	Heartbeats        int           // intervals observed; default 3
	CommandTimeout    time.Duration // an ack must come within it; default 10 s
	BackoffInitial    time.Duration // expected first reconnect delay; default 5 s
	BackoffMax        time.Duration // expected cap; default 60 s
	Disconnects       int           // forced closes; default 5 (at least 5)
	MaxResultBytes    int           // told in welcome; default 8192
	Wait              time.Duration // for the device's first connection; default 10 min
	Log               io.Writer     // progress lines; nil: none
}

// Defaults fills zero fields with the seed firmware's schedule.
func (c Config) Defaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.DeviceID == "" {
		c.DeviceID = "dev_check"
	}
	set(&c.HeartbeatInterval, 60*time.Second)
	set(&c.PingInterval, 30*time.Second)
	set(&c.CommandTimeout, 10*time.Second)
	set(&c.BackoffInitial, 5*time.Second)
	set(&c.BackoffMax, 60*time.Second)
	set(&c.Wait, 10*time.Minute)
	if c.Heartbeats <= 0 {
		c.Heartbeats = 3
	}
	if c.Disconnects < 5 {
		c.Disconnects = 5
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = 8192
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Probe is a running probe endpoint.
type Probe struct {
	cfg     Config
	Key     string // the test key the device must present
	CertPEM []byte // the probe's self-signed certificate
	URL     string // wss://HOST:PORT/ws
	srv     *http.Server
	ln      net.Listener
	conns   chan *probeConn
	done    chan struct{}
}

// Fingerprint is the SHA-256 of the probe's certificate (for pinning).
func (p *Probe) Fingerprint() string {
	sum := sha256.Sum256(p.certDER())
	return hex.EncodeToString(sum[:])
}

func (p *Probe) certDER() []byte {
	if b, _ := pem.Decode(p.CertPEM); b != nil {
		return b.Bytes
	}
	return nil
}

// Start listens with a fresh certificate and test key.
func Start(cfg Config) (*Probe, error) {
	cfg = cfg.Defaults()
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	hosts := []string{"localhost", "127.0.0.1"}
	if host != "" && host != "localhost" && host != "127.0.0.1" {
		hosts = append(hosts, host)
	}
	certPEM, keyPEM, err := tlscert.Generate(hosts, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	p := &Probe{cfg: cfg, Key: device.NewKey(),
		CertPEM: certPEM, ln: ln, conns: make(chan *probeConn, 64), done: make(chan struct{})}
	p.URL = "wss://" + ln.Addr().String() + "/ws"
	p.srv = &http.Server{Handler: http.HandlerFunc(p.handle), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { defer close(p.done); p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

// Close stops the probe.
func (p *Probe) Close() {
	p.srv.Close()
	<-p.done
	for {
		select {
		case c := <-p.conns:
			c.ws.CloseNow()
		default:
			return
		}
	}
}

// frame is one frame from the device.
type frame struct {
	at   time.Time
	data []byte
	err  error
}

// probeConn is one connection of the device.
type probeConn struct {
	at       time.Time // the handshake arrived
	header   string    // Sec-WebSocket-Protocol as sent
	rawQuery string
	ws       *websocket.Conn
	frames   chan frame
	mu       sync.Mutex
	pings    []time.Time
}

func (c *probeConn) pingTimes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.pings...)
}

func (p *Probe) handle(w http.ResponseWriter, r *http.Request) {
	pc := &probeConn{at: time.Now(), header: r.Header.Get("Sec-WebSocket-Protocol"), rawQuery: r.URL.RawQuery,
		frames: make(chan frame, 256)}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{protocol.Subprotocol},
		OnPingReceived: func(context.Context, []byte) bool {
			pc.mu.Lock()
			pc.pings = append(pc.pings, time.Now())
			pc.mu.Unlock()
			return true
		},
	})
	if err != nil {
		return
	}
	ws.SetReadLimit(64 << 10)
	pc.ws = ws
	go func() {
		for {
			_, data, err := ws.Read(context.Background())
			select {
			case pc.frames <- frame{at: time.Now(), data: data, err: err}:
			default: // a flood: the limits rule sees the count
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case p.conns <- pc:
	default:
		ws.CloseNow()
	}
}

// checker collects observations.
type checker struct {
	cfg    Config
	key    string
	rules  map[string]*Rule
	order  []string
	frames int
}

func (k *checker) rule(name string, required bool, expected string) *Rule {
	if r := k.rules[name]; r != nil {
		return r
	}
	r := &Rule{Name: name, Required: required, Result: NotObserved, Expected: expected}
	k.rules[name] = r
	k.order = append(k.order, name)
	return r
}

func (r *Rule) set(result, measured string) {
	if r.Result == Fail {
		return // the first failure stands
	}
	r.Result, r.Measured = result, measured
}

// Run waits for the device and runs the schedule; it returns the report
// (also when ctx ends: what was not observed says so).
func (p *Probe) Run(ctx context.Context) *Report {
	cfg := p.cfg
	k := &checker{cfg: cfg, key: p.Key, rules: map[string]*Rule{}}
	hbExp := fmt.Sprintf("every %v ±10 %%", cfg.HeartbeatInterval)
	k.rule("handshake", true, "Sec-WebSocket-Protocol: <key> or <key>, unhidra.v1")
	k.rule("no_credentials_in_url", true, "no query string")
	k.rule("heartbeat_schema", true, `{"type":"heartbeat","device_id":"<id>","ts":<s>,"free_heap":<bytes>}`)
	k.rule("heartbeat_cadence", true, hbExp)
	k.rule("ts_monotonic", true, "ts never decreases within a connection")
	k.rule("ping_interval", true, fmt.Sprintf("a WebSocket ping at least every %v (+10 %%)", cfg.PingInterval))
	k.rule("command_ack", true, fmt.Sprintf("ack with the command id within %v", cfg.CommandTimeout))
	k.rule("reconnect_backoff", true, fmt.Sprintf("%v → %v, ×2, ±30 %%, over %d forced closes", cfg.BackoffInitial, cfg.BackoffMax, cfg.Disconnects))
	k.rule("no_reconnect_after_terminal", true, "no connection after a 4501 close")
	k.rule("limits", true, fmt.Sprintf("frames ≤ 64 KiB, ack results ≤ %d bytes", cfg.MaxResultBytes))
	p.run(ctx, k)
	rep := &Report{Passed: true}
	for _, n := range k.order {
		r := *k.rules[n]
		rep.Rules = append(rep.Rules, r)
		if r.Required && r.Result != Pass {
			rep.Passed = false
		}
	}
	return rep
}

func (p *Probe) next(ctx context.Context, wait time.Duration) *probeConn {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case c := <-p.conns:
		return c
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

func (p *Probe) logf(format string, args ...any) {
	fmt.Fprintf(p.cfg.Log, "device check: "+format+"\n", args...)
}

func (p *Probe) run(ctx context.Context, k *checker) {
	cfg := p.cfg
	p.logf("waiting for the device at %s (up to %v)", p.URL, cfg.Wait)
	c := p.next(ctx, cfg.Wait)
	if c == nil {
		return
	}
	p.admit(k, c)
	p.welcome(c)
	// Heartbeats, a command, pings.
	p.logf("connected; observing %d heartbeat intervals", cfg.Heartbeats)
	var beats []time.Time
	var lastTS float64 = -1
	ackDeadline := time.Time{}
	cmdSent := time.Time{}
	end := time.Now().Add(time.Duration(float64(cfg.HeartbeatInterval) * (float64(cfg.Heartbeats) + 0.5)))
	for time.Now().Before(end) && len(beats) < cfg.Heartbeats+1 {
		f, ok := k.recv(ctx, c, time.Until(end))
		if !ok {
			break
		}
		m := p.inspect(k, f)
		switch m.Type {
		case protocol.TypeHeartbeat:
			beats = append(beats, f.at)
			if m.ts != nil {
				if *m.ts < lastTS {
					k.rules["ts_monotonic"].set(Fail, fmt.Sprintf("ts %v after %v", *m.ts, lastTS))
				}
				lastTS = *m.ts
			}
			if cmdSent.IsZero() {
				cmdSent = time.Now()
				ackDeadline = cmdSent.Add(cfg.CommandTimeout)
				c.write(map[string]any{"type": protocol.TypeCommand, "id": "cmd_check_ping", "command": "ping"})
			}
		case protocol.TypeAck:
			if m.ID == "cmd_check_ping" && !cmdSent.IsZero() {
				took := f.at.Sub(cmdSent)
				if f.at.After(ackDeadline) {
					k.rules["command_ack"].set(Fail, fmt.Sprintf("ack after %v", took.Round(time.Millisecond)))
				} else {
					k.rules["command_ack"].set(Pass, fmt.Sprintf("ack after %v", took.Round(time.Millisecond)))
				}
			}
		}
	}
	if len(beats) >= 2 {
		worst, worstGap := 0.0, time.Duration(0)
		for i := 1; i < len(beats); i++ {
			gap := beats[i].Sub(beats[i-1])
			if dev := math.Abs(float64(gap-cfg.HeartbeatInterval)) / float64(cfg.HeartbeatInterval); dev >= worst {
				worst, worstGap = dev, gap
			}
		}
		res := Pass
		if worst > 0.10 {
			res = Fail
		}
		k.rules["heartbeat_cadence"].set(res, fmt.Sprintf("%d intervals, worst %v (%+.0f %%)", len(beats)-1,
			worstGap.Round(time.Millisecond), 100*(float64(worstGap)/float64(cfg.HeartbeatInterval)-1)))
		k.rules["ts_monotonic"].set(Pass, fmt.Sprintf("%d heartbeats", len(beats)))
	} else if len(beats) == 1 {
		k.rules["heartbeat_cadence"].set(Fail, "one heartbeat, then none within the interval")
	}
	if pings := c.pingTimes(); len(pings) >= 1 {
		worst := pings[0].Sub(c.at)
		for i := 1; i < len(pings); i++ {
			worst = max(worst, pings[i].Sub(pings[i-1]))
		}
		res := Pass
		if float64(worst) > 1.1*float64(cfg.PingInterval) {
			res = Fail
		}
		k.rules["ping_interval"].set(res, fmt.Sprintf("%d pings, longest wait %v", len(pings), worst.Round(time.Millisecond)))
	} else if time.Since(c.at) > time.Duration(1.1*float64(cfg.PingInterval)) {
		k.rules["ping_interval"].set(Fail, fmt.Sprintf("no ping in %v", time.Since(c.at).Round(time.Second)))
	}

	// Forced closes: the delays must follow the backoff.
	var delays []string
	okBackoff := true
	for i := 0; i < cfg.Disconnects; i++ {
		base := min(time.Duration(float64(cfg.BackoffInitial)*math.Pow(2, float64(i))), cfg.BackoffMax)
		closedAt := time.Now()
		c.ws.Close(protocol.CloseServiceRestart, "device check: reconnect, please")
		// Handshakes only add to a delay: little slack below, more above.
		lo := time.Duration(0.7*float64(base)) - min(250*time.Millisecond, base/20)
		hi := time.Duration(1.3*float64(base)) + 250*time.Millisecond + time.Duration(0.05*float64(base))
		p.logf("forced close %d/%d; expecting a reconnect in %v–%v", i+1, cfg.Disconnects, max(lo, 0).Round(time.Millisecond), hi.Round(time.Millisecond))
		next := p.next(ctx, hi+cfg.BackoffMax)
		if next == nil {
			delays = append(delays, "none")
			okBackoff = false
			break
		}
		d := next.at.Sub(closedAt)
		delays = append(delays, d.Round(10*time.Millisecond).String())
		if d < lo || d > hi {
			okBackoff = false
		}
		c = next
		p.admit(k, c)
		p.welcome(c)
		// Let it say hello (its first heartbeat) before the next close.
		if f, ok := k.recv(ctx, c, max(2*time.Second, cfg.HeartbeatInterval/10)); ok {
			p.inspect(k, f)
		}
	}
	if ctx.Err() != nil {
		return
	}
	res := Pass
	if !okBackoff {
		res = Fail
	}
	k.rules["reconnect_backoff"].set(res, "delays "+strings.Join(delays, ", "))
	if !okBackoff && len(delays) < cfg.Disconnects {
		return
	}

	// A terminal close: no reconnect.
	wait := time.Duration(1.3*float64(cfg.BackoffMax)) + 2*time.Second
	c.ws.Close(protocol.CloseRevoked, "device check: revoked")
	p.logf("terminal close (4501); watching %v for a reconnect", wait)
	if again := p.next(ctx, wait); again != nil {
		k.rules["no_reconnect_after_terminal"].set(Fail, fmt.Sprintf("reconnected after %v", again.at.Sub(time.Now().Add(-wait)).Round(time.Millisecond)))
		again.ws.CloseNow()
	} else if ctx.Err() == nil {
		k.rules["no_reconnect_after_terminal"].set(Pass, fmt.Sprintf("none in %v", wait))
	}
	if r := k.rules["limits"]; r.Result == NotObserved && k.frames > 0 {
		r.set(Pass, fmt.Sprintf("%d frames within limits", k.frames))
	}
}

// admit judges a connection's handshake.
func (p *Probe) admit(k *checker, c *probeConn) {
	switch {
	case c.header == p.Key:
		k.rules["handshake"].set(Pass, "<key>")
	case c.header == p.Key+", "+protocol.Subprotocol:
		k.rules["handshake"].set(Pass, "<key>, unhidra.v1")
	case strings.Contains(c.header, p.Key):
		k.rules["handshake"].set(Fail, "the key, but in another form: "+strings.ReplaceAll(c.header, p.Key, "<key>"))
	default:
		k.rules["handshake"].set(Fail, "the key is missing")
	}
	if c.rawQuery != "" {
		what := "a query string"
		if strings.Contains(c.rawQuery, p.Key) || strings.Contains(strings.ToLower(c.rawQuery), "token") || strings.Contains(strings.ToLower(c.rawQuery), "key") {
			what = "a credential in the query string"
		}
		k.rules["no_credentials_in_url"].set(Fail, what)
	} else {
		k.rules["no_credentials_in_url"].set(Pass, "none")
	}
}

func (p *Probe) welcome(c *probeConn) {
	c.write(map[string]any{
		"type": protocol.TypeWelcome, "protocol": protocol.Subprotocol, "session": "check",
		"identity":           map[string]any{"id": p.cfg.DeviceID, "name": "device check", "kind": "device"},
		"server_time":        time.Now().UTC(),
		"heartbeat_interval": p.cfg.HeartbeatInterval.Seconds(), "ping_interval": p.cfg.PingInterval.Seconds(),
		"idle_timeout": (3 * p.cfg.PingInterval).Seconds(),
		"limits": map[string]any{"max_frame_bytes": 64 << 10, "messages_per_second": 20, "burst": 40,
			"command_window": 8, "max_result_bytes": p.cfg.MaxResultBytes, "max_error_bytes": 1024},
	})
}

func (c *probeConn) write(v any) {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.ws.Write(ctx, websocket.MessageText, b)
}

// recv waits for c's next frame. A frame over the read limit ends the
// connection with a read error, not a frame: the limits rule is judged here.
func (k *checker) recv(ctx context.Context, c *probeConn, wait time.Duration) (frame, bool) {
	if wait <= 0 {
		return frame{}, false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case f := <-c.frames:
		if errors.Is(f.err, websocket.ErrMessageTooBig) {
			k.rules["limits"].set(Fail, "a frame over 64 KiB")
		}
		return f, f.err == nil
	case <-t.C:
	case <-ctx.Done():
	}
	return frame{}, false
}

// seen is what inspect makes of a frame.
type seen struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	ts   *float64
}

// inspect judges one frame's schema and limits.
func (p *Probe) inspect(k *checker, f frame) seen {
	k.frames++
	var m map[string]json.RawMessage
	var s seen
	if json.Unmarshal(f.data, &m) != nil {
		k.rules["limits"].set(Fail, "a frame that is not a JSON object")
		return s
	}
	json.Unmarshal(m["type"], &s.Type)
	json.Unmarshal(m["id"], &s.ID)
	switch s.Type {
	case protocol.TypeHeartbeat:
		var id string
		var ts, heap *float64
		json.Unmarshal(m["device_id"], &id)
		if m["ts"] != nil {
			json.Unmarshal(m["ts"], &ts)
		} else {
			json.Unmarshal(m["timestamp"], &ts)
		}
		json.Unmarshal(m["free_heap"], &heap)
		switch {
		case id != p.cfg.DeviceID:
			k.rules["heartbeat_schema"].set(Fail, fmt.Sprintf("device_id %q, want %q", id, p.cfg.DeviceID))
		case ts == nil || *ts < 0:
			k.rules["heartbeat_schema"].set(Fail, "ts missing or not a number of seconds")
		case heap == nil || *heap < 0 || *heap != math.Trunc(*heap):
			k.rules["heartbeat_schema"].set(Fail, "free_heap missing or not a whole number")
		default:
			k.rules["heartbeat_schema"].set(Pass, fmt.Sprintf("ts %v, free_heap %v", *ts, *heap))
		}
		s.ts = ts
	case protocol.TypeAck:
		if n := len(m["result"]); n > p.cfg.MaxResultBytes {
			k.rules["limits"].set(Fail, fmt.Sprintf("an ack result of %d bytes", n))
		}
	}
	return s
}

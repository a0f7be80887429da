// Package fleet simulates a fleet of devices that behave exactly like the
// seed ESP32 firmware (its TLS key exchange, X25519; the key as the whole
// Sec-WebSocket-Protocol header, a heartbeat every interval with a
// monotonic uptime and a slowly shrinking free heap, a ping every 30 s,
// acks for commands) for load
// tests, reconnect storms and demos. It is bounded in devices and time,
// and keeps per-device state small: one goroutine (the reader) and two
// timers per connected device.
package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra/agent"
)

// Options configure a simulation. Zero fields take the defaults noted.
type Options struct {
	URL  string   // wss://HOST/ws (ws:// is allowed for plaintext test servers)
	Keys []string // one device key per device; len(Keys) ≥ Devices
	// Devices is how many devices to simulate (1–MaxDevices).
	Devices int
	// Duration bounds the whole run (required, at most 24 h).
	Duration time.Duration

	HeartbeatInterval time.Duration // zero: 60 s
	PingInterval      time.Duration // zero: 30 s; a ping unanswered for 2× this drops the link
	HandshakeTimeout  time.Duration // zero: 20 s
	// Ramp is how many new devices start per second. Zero: 200.
	Ramp int
	// MaxDialing bounds handshakes in flight. Zero: 256.
	MaxDialing int
	// Backoff is the reconnect schedule (zero: the firmware's).
	Backoff agent.Backoff
	// ReportEvery is the period of progress lines. Zero: 10 s.
	ReportEvery time.Duration
	// SourceAddrs are local addresses connections are spread over (each
	// (source, destination) pair has its own ~28k ephemeral ports). Nil:
	// for a loopback server, one 127.0.0.x per 8000 devices; else the
	// system's choice.
	SourceAddrs []netip.Addr

	RootCAs   *x509.CertPool // nil: system roots
	PinSHA256 []byte         // with RootCAs nil, the pin alone is trusted

	// Fault makes every device break one rule of the protocol, so that
	// `unhidra device check` can be shown to catch it: FaultHandshake,
	// FaultLateHeartbeats, FaultNoBackoff or FaultReconnectAfterTerminal.
	// Empty: the seed firmware's behaviour.
	Fault string

	Out io.Writer // progress and the final report; nil: discarded
	// Progress, when set, receives each periodic report too.
	Progress func(Report)
}

// Faults a simulated firmware can have (Options.Fault).
const (
	FaultHandshake              = "wrong-handshake"      // "unhidra.v1,<key>": the key, in the wrong form
	FaultLateHeartbeats         = "late-heartbeats"      // heartbeats 30 % late
	FaultNoBackoff              = "no-backoff"           // reconnects at once, every time
	FaultReconnectAfterTerminal = "reconnect-after-4501" // treats a terminal close as any other
)

// ValidFault reports whether f is empty or a known fault.
func ValidFault(f string) bool {
	switch f {
	case "", FaultHandshake, FaultLateHeartbeats, FaultNoBackoff, FaultReconnectAfterTerminal:
		return true
	}
	return false
}

// firmwareCurves are the key-exchange groups the seed firmware's TLS stack
// (mbedTLS in ESP-IDF) offers, X25519 first. Go's own default would lead
// with the X25519MLKEM768 hybrid, whose ≈ 1.2 KB key share makes the
// ClientHello ≈ 1.5 KiB: the server's record and handshake buffers grow to
// fit it and keep that size for the connection's life, and both sides pay
// the ML-KEM operations on every handshake. A simulator of the firmware
// must present the firmware's handshake, not Go's.
var firmwareCurves = []tls.CurveID{tls.X25519, tls.CurveP256}

// MaxDevices bounds one process: the open-file limit on these machines is
// 20,000, so larger fleets run as several processes.
const MaxDevices = 19000

// Report is what a run measured.
type Report struct {
	Devices        int
	Connected      int64 // connected at the end (or at the last report)
	PeakConnected  int64
	Handshakes     int64 // successful WebSocket handshakes + welcomes
	Reconnects     int64 // handshakes after a device's first
	Errors         int64 // failed handshakes, dropped links, write failures
	Terminal       int64 // devices stopped by a terminal close code or 401/403
	Heartbeats     int64
	Acks           int64
	HandshakeP50   time.Duration
	HandshakeP90   time.Duration
	HandshakeP99   time.Duration
	HandshakeMax   time.Duration
	LastErrors     []string // a few distinct recent error texts (keys redacted)
	Elapsed        time.Duration
	latencySamples int
}

func (r Report) String() string {
	return fmt.Sprintf("devices=%d connected=%d peak=%d handshakes=%d reconnects=%d errors=%d terminal=%d heartbeats=%d acks=%d handshake p50=%v p90=%v p99=%v max=%v",
		r.Devices, r.Connected, r.PeakConnected, r.Handshakes, r.Reconnects, r.Errors, r.Terminal, r.Heartbeats, r.Acks,
		r.HandshakeP50.Round(time.Microsecond), r.HandshakeP90.Round(time.Microsecond), r.HandshakeP99.Round(time.Microsecond), r.HandshakeMax.Round(time.Microsecond))
}

// maxLatencySamples bounds the memory kept for percentiles.
const maxLatencySamples = 1 << 20

// fleet is one run's shared state.
type fleet struct {
	opts    Options
	clients []*http.Client // one per source address
	dialing chan struct{}

	connected, peak, handshakes, reconnects, errs, terminal, heartbeats, acks atomic.Int64

	mu        sync.Mutex // guards the following fields
	latencies []time.Duration
	lastErrs  []string
}

func (o *Options) validate() error {
	u, err := url.Parse(o.URL)
	switch {
	case err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "":
		return errors.New("URL must be wss://HOST/ws")
	case u.RawQuery != "" || u.User != nil:
		return errors.New("URL must not carry a query or user info")
	case o.Devices < 1 || o.Devices > MaxDevices:
		return fmt.Errorf("devices must be between 1 and %d per process", MaxDevices)
	case len(o.Keys) < o.Devices:
		return fmt.Errorf("%d keys for %d devices: each device needs its own key", len(o.Keys), o.Devices)
	case o.Duration <= 0 || o.Duration > 24*time.Hour:
		return errors.New("duration must be between 0 and 24h")
	}
	for i, k := range o.Keys[:o.Devices] {
		if err := agent.ValidateKey(k); err != nil {
			return fmt.Errorf("key %d: %w", i+1, err)
		}
	}
	def := func(d *time.Duration, v, lo, hi time.Duration, name string) error {
		if *d == 0 {
			*d = v
		}
		if *d < lo || *d > hi {
			return fmt.Errorf("%s must be between %v and %v", name, lo, hi)
		}
		return nil
	}
	if err := errors.Join(
		def(&o.HeartbeatInterval, 60*time.Second, 50*time.Millisecond, 24*time.Hour, "heartbeat interval"),
		def(&o.PingInterval, 30*time.Second, 50*time.Millisecond, time.Hour, "ping interval"),
		def(&o.HandshakeTimeout, 20*time.Second, 100*time.Millisecond, 5*time.Minute, "handshake timeout"),
		def(&o.ReportEvery, 10*time.Second, 10*time.Millisecond, time.Hour, "report interval"),
	); err != nil {
		return err
	}
	if o.Ramp == 0 {
		o.Ramp = 200
	}
	if o.MaxDialing == 0 {
		o.MaxDialing = 256
	}
	if o.Ramp < 1 || o.Ramp > 100000 || o.MaxDialing < 1 || o.MaxDialing > 10000 {
		return errors.New("ramp must be 1–100000/s and max dialing 1–10000")
	}
	if len(o.SourceAddrs) > 256 {
		return errors.New("at most 256 source addresses")
	}
	if len(o.PinSHA256) != 0 && len(o.PinSHA256) != 32 {
		return errors.New("pin must be a SHA-256")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// defaultSources spreads a large fleet over loopback source addresses
// when the server is on loopback.
func defaultSources(host string, devices int) []netip.Addr {
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return nil
	}
	n := (devices + 7999) / 8000
	srcs := make([]netip.Addr, n)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)})
	}
	return srcs
}

// Run simulates the fleet until opts.Duration passes or ctx ends, printing
// progress every ReportEvery, and returns the final report.
func Run(ctx context.Context, opts Options) (Report, error) {
	if err := opts.validate(); err != nil {
		return Report{}, fmt.Errorf("fleet: %w", err)
	}
	u, _ := url.Parse(opts.URL)
	srcs := opts.SourceAddrs
	if srcs == nil {
		srcs = defaultSources(u.Hostname(), opts.Devices)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs, ClientSessionCache: tls.NewLRUClientSessionCache(1024),
		CurvePreferences: firmwareCurves}
	if pin := opts.PinSHA256; len(pin) == 32 {
		tc.InsecureSkipVerify = opts.RootCAs == nil // the pin is the trust decision
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return errors.New("server certificate does not match the pin")
			}
			return nil
		}
	}
	f := &fleet{opts: opts, dialing: make(chan struct{}, opts.MaxDialing)}
	newClient := func(local net.Addr) *http.Client {
		return &http.Client{
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: opts.HandshakeTimeout, LocalAddr: local}).DialContext,
				TLSClientConfig:     tc,
				TLSHandshakeTimeout: opts.HandshakeTimeout,
				DisableKeepAlives:   true,
				DisableCompression:  true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if len(srcs) == 0 {
		f.clients = []*http.Client{newClient(nil)}
	}
	for _, s := range srcs {
		f.clients = append(f.clients, newClient(&net.TCPAddr{IP: s.AsSlice()}))
	}
	defer func() {
		for _, c := range f.clients {
			c.Transport.(*http.Transport).CloseIdleConnections()
		}
	}()

	// The run ends with runCtx; the devices close only after the final
	// count, so that it counts those connected at the end, not those
	// that had not yet begun to close.
	runCtx, endRun := context.WithTimeout(ctx, opts.Duration)
	defer endRun()
	devCtx, closeDevices := context.WithCancel(ctx)
	defer closeDevices()
	start := time.Now()
	var wg sync.WaitGroup
	// The reporter is owned here and stops with the run.
	reportDone := make(chan struct{})
	go func() {
		defer close(reportDone)
		t := time.NewTicker(opts.ReportEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				r := f.report(start)
				fmt.Fprintf(opts.Out, "t=%v %s\n", r.Elapsed.Round(time.Second), r)
				if opts.Progress != nil {
					opts.Progress(r)
				}
			}
		}
	}()
	// Devices start at the ramp rate.
	tick := time.NewTicker(time.Second / time.Duration(opts.Ramp))
	for i := 0; i < opts.Devices; i++ {
		if i > 0 {
			select {
			case <-runCtx.Done():
			case <-tick.C:
			}
		}
		if runCtx.Err() != nil {
			break
		}
		d := &device{f: f, key: opts.Keys[i], client: f.clients[i%len(f.clients)],
			uptime: time.Duration(rand.IntN(86400)) * time.Second, heap: 200000 + uint64(rand.IntN(60000))}
		wg.Add(1)
		go func() { defer wg.Done(); d.run(devCtx) }()
	}
	tick.Stop()
	<-runCtx.Done()
	final := f.report(start)
	closeDevices()
	wg.Wait()
	<-reportDone
	fmt.Fprintf(opts.Out, "final %s\n", final)
	if len(final.LastErrors) > 0 {
		fmt.Fprintf(opts.Out, "recent errors:\n  %s\n", strings.Join(final.LastErrors, "\n  "))
	}
	return final, nil
}

// report snapshots the counters and latency percentiles.
func (f *fleet) report(start time.Time) Report {
	r := Report{
		Devices: f.opts.Devices, Connected: f.connected.Load(), PeakConnected: f.peak.Load(),
		Handshakes: f.handshakes.Load(), Reconnects: f.reconnects.Load(), Errors: f.errs.Load(),
		Terminal: f.terminal.Load(), Heartbeats: f.heartbeats.Load(), Acks: f.acks.Load(),
		Elapsed: time.Since(start),
	}
	f.mu.Lock()
	lat := slices.Clone(f.latencies)
	r.LastErrors = slices.Clone(f.lastErrs)
	f.mu.Unlock()
	slices.Sort(lat)
	r.latencySamples = len(lat)
	if n := len(lat); n > 0 {
		pct := func(p float64) time.Duration { return lat[min(n-1, int(p*float64(n)))] }
		r.HandshakeP50, r.HandshakeP90, r.HandshakeP99, r.HandshakeMax = pct(0.50), pct(0.90), pct(0.99), lat[n-1]
	}
	return r
}

func (f *fleet) recordError(key string, err error) {
	f.errs.Add(1)
	msg := strings.ReplaceAll(err.Error(), key, "[redacted]")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.lastErrs, msg) {
		if len(f.lastErrs) == 5 {
			f.lastErrs = f.lastErrs[1:]
		}
		f.lastErrs = append(f.lastErrs, msg)
	}
}

func (f *fleet) recordLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.latencies) < maxLatencySamples {
		f.latencies = append(f.latencies, d)
	}
}

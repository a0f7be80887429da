// Package wsbench measures the idle memory an Engine spends per WebSocket
// connection. The server side runs in the calling process; the clients run
// in a separate process (so that their memory and file descriptors are not
// counted), started by a function the caller provides: the wsmeasure
// command re-executes itself, the package's test re-executes the test
// binary.
package wsbench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/tlscert"
	"github.com/unhidra/unhidra/internal/ws"
)

// Server selects the server implementation measured.
type Server string

const (
	// ServerEngine is this package's subject: ws.Engine behind
	// ws.WrapListener.
	ServerEngine Server = "engine"
	// ServerCoder is a baseline: github.com/coder/websocket's Accept with
	// one goroutine per connection blocked in Read, the usual design.
	ServerCoder Server = "coder"
)

// MeasureConfig says what to measure.
type MeasureConfig struct {
	Conns  int    // idle connections to open
	TLS    bool   // serve over TLS (self-signed ECDSA P-256, TLS 1.3)
	Server Server // zero means ServerEngine
	// StartClient returns the command that runs RunClient in another
	// process with the given arguments (see ClientArgs); its stdin and
	// stdout are used to talk to it.
	StartClient func(args []string) *exec.Cmd
	// Settle is how long to wait with every connection open before
	// measuring, so that transient goroutines and buffers are gone. Zero
	// means 2 s.
	Settle time.Duration
	Log    *slog.Logger // nil: discard
	// WarmupBytes, if positive, makes every client send one binary message
	// of that size right after the handshake and wait for the server's
	// short answer, so that the connection is measured idle after some
	// traffic rather than straight after the handshake.
	WarmupBytes int
	// HeapProfile, if set, receives a heap profile taken with every
	// connection idle (see runtime/pprof).
	HeapProfile io.Writer
}

// Result is one measurement. Per-connection figures are the difference
// between the idle state with Conns connections and the state before any,
// divided by Conns.
type Result struct {
	Conns             int
	TLS               bool
	Server            Server
	WarmupBytes       int
	HeapPerConn       float64 // bytes of live heap (runtime HeapAlloc after GC)
	HeapStackPerConn  float64 // HeapInuse + StackInuse: heap spans and goroutine stacks
	RSSPerConn        float64 // resident set (VmRSS), bytes
	GoroutinesPerConn float64
	Goroutines        int // after, absolute
	Delivered         int // connections that received the check message after the measurement
	Elapsed           time.Duration
}

func (r Result) String() string {
	mode := "plain"
	if r.TLS {
		mode = "tls"
	}
	return fmt.Sprintf("server=%s mode=%s warmup=%dB conns=%d heap/conn=%.0f B (%.2f KiB) heap+stack/conn=%.0f B (%.2f KiB) rss/conn=%.0f B (%.2f KiB) goroutines/conn=%.3f delivered=%d/%d",
		r.Server, mode, r.WarmupBytes, r.Conns, r.HeapPerConn, r.HeapPerConn/1024, r.HeapStackPerConn, r.HeapStackPerConn/1024,
		r.RSSPerConn, r.RSSPerConn/1024, r.GoroutinesPerConn, r.Delivered, r.Conns)
}

type snapshot struct {
	heapAlloc, heapStack, rss uint64
	goroutines                int
}

func measureNow() (snapshot, error) {
	// Two collections: the first may leave objects freed only by the
	// second (finalizers, sync.Pool victim caches).
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := readRSS()
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{
		heapAlloc:  ms.HeapAlloc,
		heapStack:  ms.HeapInuse + ms.StackInuse,
		rss:        rss,
		goroutines: runtime.NumGoroutine(),
	}, nil
}

// readRSS returns VmRSS from /proc/self/status, in bytes (0 where there is
// no /proc).
func readRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wsbench: read status: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("wsbench: parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("wsbench: no VmRSS in /proc/self/status")
}

// idleHandler answers each message with a short ack; otherwise the
// connections are idle.
type idleHandler struct{ opened atomic.Int64 }

var ackMessage = []byte(`{"type":"ack"}`)

func (h *idleHandler) OnOpen(*ws.Conn) { h.opened.Add(1) }

func (h *idleHandler) OnMessage(c *ws.Conn, _ bool, _ []byte) { _ = c.SendText(ackMessage) }

func (h *idleHandler) OnClose(*ws.Conn, error) {}

// MeasureIdle opens cfg.Conns idle connections from a client process to a
// server in this process and measures this process's memory per
// connection. It then sends one message to every connection and counts how
// many the client received, to show the connections were alive.
func MeasureIdle(ctx context.Context, cfg MeasureConfig) (Result, error) {
	start := time.Now()
	if cfg.Server == "" {
		cfg.Server = ServerEngine
	}
	if cfg.Settle == 0 {
		cfg.Settle = 2 * time.Second
	}
	logger := cfg.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res := Result{Conns: cfg.Conns, TLS: cfg.TLS, Server: cfg.Server, WarmupBytes: cfg.WarmupBytes}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("wsbench: listen: %w", err)
	}
	defer ln.Close()
	var certDER []byte
	var l net.Listener = ln
	if cfg.Server == ServerEngine {
		l = ws.WrapListener(ln)
	}
	if cfg.TLS {
		tlsCfg, der, err := selfSigned()
		if err != nil {
			return res, err
		}
		certDER = der
		l = tls.NewListener(l, tlsCfg)
	}

	engine, err := ws.NewEngine(ws.Config{}, logger)
	if err != nil {
		return res, err
	}
	defer engine.Close()
	h := &idleHandler{}
	coder := newCoderServer()
	defer coder.close()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Server == ServerCoder {
			coder.serve(w, r)
			return
		}
		nc, buffered, err := ws.Upgrade(w, r, "", nil)
		if err != nil {
			return
		}
		if _, err := engine.Serve(nc, buffered, h, nil); err != nil {
			logger.Error("serve", "err", err)
		}
	})
	srv := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	defer func() { srv.Close(); <-served }()

	before, err := measureNow()
	if err != nil {
		return res, err
	}

	args := ClientArgs(ln.Addr().String(), cfg.Conns, cfg.TLS, certDER, cfg.WarmupBytes)
	cmd := cfg.StartClient(args)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, fmt.Errorf("wsbench: client stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("wsbench: client stdout: %w", err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("wsbench: start client: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(prefix string) (string, error) {
		for {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case line, ok := <-lines:
				if !ok {
					return "", errors.New("wsbench: client exited")
				}
				if strings.HasPrefix(line, prefix) {
					return line, nil
				}
				logger.Info("client", "says", line)
			}
		}
	}
	if _, err := expect("ready"); err != nil {
		return res, err
	}
	// Every connection must be served (not just dialed) before measuring.
	for servedCount := func() int {
		if cfg.Server == ServerCoder {
			return int(coder.opened.Load())
		}
		return int(h.opened.Load())
	}; servedCount() < cfg.Conns; {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(cfg.Settle):
	}
	after, err := measureNow()
	if err != nil {
		return res, err
	}
	if cfg.HeapProfile != nil {
		if err := pprof.Lookup("heap").WriteTo(cfg.HeapProfile, 0); err != nil {
			return res, fmt.Errorf("wsbench: heap profile: %w", err)
		}
	}
	n := float64(cfg.Conns)
	res.HeapPerConn = (float64(after.heapAlloc) - float64(before.heapAlloc)) / n
	res.HeapStackPerConn = (float64(after.heapStack) - float64(before.heapStack)) / n
	res.RSSPerConn = (float64(after.rss) - float64(before.rss)) / n
	res.GoroutinesPerConn = float64(after.goroutines-before.goroutines) / n
	res.Goroutines = after.goroutines

	// Liveness check: one message to every connection.
	pm := ws.NewPreparedMessage(true, []byte(`{"type":"ping_check"}`))
	if cfg.Server == ServerCoder {
		coder.broadcast([]byte(`{"type":"ping_check"}`))
	} else {
		engine.Range(func(c *ws.Conn) bool {
			_ = c.SendPrepared(pm)
			return true
		})
	}
	if _, err := io.WriteString(stdin, "count\n"); err != nil {
		return res, fmt.Errorf("wsbench: ask client: %w", err)
	}
	line, err := expect("received ")
	if err != nil {
		return res, err
	}
	res.Delivered, _ = strconv.Atoi(strings.TrimPrefix(line, "received "))
	res.Elapsed = time.Since(start)
	return res, nil
}

// ClientArgs returns the arguments RunClient expects (after whatever selects
// the client role in the executable).
func ClientArgs(addr string, conns int, useTLS bool, certDER []byte, warmupBytes int) []string {
	args := []string{"-addr", addr, "-n", strconv.Itoa(conns), "-warmup", strconv.Itoa(warmupBytes)}
	if useTLS {
		args = append(args, "-tls-cert", base64.StdEncoding.EncodeToString(certDER))
	}
	return args
}

// ClientConfig is RunClient's configuration, parsed from ClientArgs.
type ClientConfig struct {
	Addr        string
	Conns       int
	CertDER     []byte // non-nil: TLS, trusting only this certificate
	WarmupBytes int    // see MeasureConfig.WarmupBytes
}

// ParseClientArgs parses what ClientArgs produced.
func ParseClientArgs(args []string) (ClientConfig, error) {
	var cc ClientConfig
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-addr":
			cc.Addr = args[i+1]
		case "-n":
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				return cc, fmt.Errorf("wsbench: -n: %w", err)
			}
			cc.Conns = n
		case "-warmup":
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				return cc, fmt.Errorf("wsbench: -warmup: %w", err)
			}
			cc.WarmupBytes = n
		case "-tls-cert":
			der, err := base64.StdEncoding.DecodeString(args[i+1])
			if err != nil {
				return cc, fmt.Errorf("wsbench: -tls-cert: %w", err)
			}
			cc.CertDER = der
		default:
			return cc, fmt.Errorf("wsbench: unknown client argument %q", args[i])
		}
	}
	if cc.Addr == "" || cc.Conns <= 0 {
		return cc, errors.New("wsbench: client needs -addr and -n")
	}
	return cc, nil
}

// RunClient is the client process: it opens cc.Conns WebSocket connections
// (raw handshakes, 64 at a time), prints "ready N", then on each "count"
// line from in prints "received K" once every connection received a data
// frame (or after 30 s); it returns when in ends, closing everything.
func RunClient(cc ClientConfig, in io.Reader, out io.Writer) error {
	var tlsCfg *tls.Config
	if cc.CertDER != nil {
		cert, err := x509.ParseCertificate(cc.CertDER)
		if err != nil {
			return fmt.Errorf("wsbench: client cert: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		tlsCfg = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	conns := make([]net.Conn, cc.Conns)
	readers := make([]*bufio.Reader, cc.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cc.Conns {
					return
				}
				c, br, err := clientHandshake(cc.Addr, tlsCfg)
				if err == nil && cc.WarmupBytes > 0 {
					err = warmup(c, br, cc.WarmupBytes)
				}
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i], readers[i] = c, br
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(out, "ready %d\n", cc.Conns)

	var got atomic.Int64
	for i := range conns {
		go func() { // ends when the connection is closed on return
			if readDataFrame(readers[i]) == nil {
				got.Add(1)
			}
			_, _ = io.Copy(io.Discard, readers[i])
		}()
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "count" {
			continue
		}
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() < int64(cc.Conns) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Fprintf(out, "received %d\n", got.Load())
	}
	return nil
}

func clientHandshake(addr string, tlsCfg *tls.Config) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if tlsCfg != nil {
		tc := tls.Client(c, tlsCfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, nil, err
		}
		c = tc
	}
	var key [16]byte
	rand.Read(key[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return c, br, nil
}

// warmup sends one masked binary message of n bytes and reads the answer.
func warmup(c net.Conn, br *bufio.Reader, n int) error {
	frame := make([]byte, 0, n+14)
	switch {
	case n <= 125:
		frame = append(frame, 0x82, 0x80|byte(n))
	case n <= 0xFFFF:
		frame = append(frame, 0x82, 0x80|126, byte(n>>8), byte(n))
	default:
		return errors.New("warm-up message over 64 KiB")
	}
	frame = append(frame, 0, 0, 0, 0) // a zero masking key: the payload goes as is
	frame = append(frame, make([]byte, n)...)
	if _, err := c.Write(frame); err != nil {
		return err
	}
	return readDataFrame(br)
}

// readDataFrame reads frames until a text or binary one (server frames are
// unmasked).
func readDataFrame(br *bufio.Reader) error {
	for {
		var hdr [10]byte
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return err
		}
		n := int(hdr[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
				return err
			}
			n = int(hdr[2])<<8 | int(hdr[3])
		case 127:
			return errors.New("frame too long for a check message")
		}
		if _, err := br.Discard(n); err != nil {
			return err
		}
		if op := hdr[0] & 0x0F; op == 1 || op == 2 {
			return nil
		}
	}
}

// selfSigned makes a TLS config with a fresh self-signed ECDSA P-256
// certificate for 127.0.0.1 and returns the certificate's DER.
func selfSigned() (*tls.Config, []byte, error) {
	certPEM, keyPEM, err := tlscert.Generate([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("wsbench: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("wsbench: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, cert.Certificate[0], nil
}

// coderServer is the goroutine-per-connection baseline.
type coderServer struct {
	opened atomic.Int64
	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	wg     sync.WaitGroup
}

func newCoderServer() *coderServer { return &coderServer{conns: map[*websocket.Conn]struct{}{}} }

func (s *coderServer) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.opened.Add(1)
	s.wg.Go(func() {
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
			_ = c.Write(context.Background(), websocket.MessageText, ackMessage)
		}
	})
}

func (s *coderServer) broadcast(p []byte) {
	s.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range conns {
		_ = c.Write(ctx, websocket.MessageText, p)
	}
}

func (s *coderServer) close() {
	s.mu.Lock()
	for c := range s.conns {
		c.CloseNow()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

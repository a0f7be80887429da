package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/unhidra/unhidra/protocol"
)

func defaultRand() float64 { return rand.Float64() }

// HandlerFunc handles one command. params is the command's params JSON
// (nil when absent). The returned result is JSON-encoded into the ack;
// a non-nil error acks ok:false with the error's text. ctx ends when the
// command times out or the connection ends.
type HandlerFunc func(ctx context.Context, params json.RawMessage) (result any, err error)

// Agent is one device's connection to the server. Create it with New and
// call Run once.
type Agent struct {
	cfg    Config // static after New
	log    *slog.Logger
	red    redactor
	client *http.Client

	mu       sync.Mutex // guards the following fields
	handlers map[string]HandlerFunc
	hbEvery  time.Duration // heartbeat interval set by set-heartbeat (0: none)
	running  bool
	ownBoot  bool // "reboot" was replaced by Handle: Config.Reboot is not called

	seen seenCommands // command ids answered or running, across connections
}

// TerminalError is returned by Run when the server ends the session in a
// way that reconnecting cannot fix: a close code 4500–4999 or 1008, or
// (unless Config.RetryUnauthorized) a refused key at the handshake.
type TerminalError struct {
	Code   int    // the close code, or 0 for an HTTP refusal
	Status int    // the HTTP status of a refused handshake, or 0
	Reason string // the server's reason (redacted, sanitised)
}

func (e *TerminalError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("server refused the device key (HTTP %d): %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("server closed the connection for good (code %d): %s", e.Code, e.Reason)
}

// New checks cfg and returns an Agent with the built-in handlers
// (ping, uptime, meminfo, set-heartbeat, reboot) registered.
func New(cfg Config) (*Agent, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(c.URL)
	host := u.Hostname()
	transport := &http.Transport{
		DialContext:            (&net.Dialer{Timeout: c.HandshakeTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        tlsConfig(c, host),
		TLSHandshakeTimeout:    c.HandshakeTimeout,
		ResponseHeaderTimeout:  c.HandshakeTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
		DisableKeepAlives:      true, // each handshake is its own connection
	}
	header := c.Key
	if c.OfferSubprotocol {
		header = c.Key + ", " + protocol.Subprotocol
	}
	a := &Agent{
		cfg: c,
		log: c.Logger,
		red: redactor{c.Key},
		client: &http.Client{
			Transport: protocolHeader{base: transport, value: header},
			// A redirect would carry the key to another address: refuse it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		handlers: map[string]HandlerFunc{},
	}
	a.registerBuiltins()
	return a, nil
}

// protocolHeader sets Sec-WebSocket-Protocol exactly as the protocol
// writes it ("<key>" or "<key>, unhidra.v1"); the WebSocket library would
// join entries without the space.
type protocolHeader struct {
	base  http.RoundTripper
	value string
}

func (p protocolHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Sec-WebSocket-Protocol", p.value)
	return p.base.RoundTrip(r)
}

// Handle registers fn for command name, replacing any handler of that
// name, built-ins included. Names are 1–64 bytes of [A-Za-z0-9._:-] (the
// server's rule) starting with a letter or digit, so a hook program never
// gets an option-like argument. It may be called while Run runs.
func (a *Agent) Handle(name string, fn HandlerFunc) error {
	if !validCommandName(name) {
		return configErr("invalid command name %q", name)
	}
	if fn == nil {
		return configErr("nil handler for %q", name)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handlers[name] = fn
	if name == "reboot" {
		a.ownBoot = true
	}
	return nil
}

func validCommandName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case (b == '.' || b == '_' || b == '-' || b == ':') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Run connects and keeps the device connected until ctx ends (then it
// closes the connection with 1001 and returns nil) or the server ends the
// session for good (then it returns a *TerminalError). Run may be called
// only once at a time.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("agent: Run called twice")
	}
	a.running = true
	a.mu.Unlock()
	defer func() { a.mu.Lock(); a.running = false; a.mu.Unlock() }()

	clk := a.cfg.Clock
	attempt := 0
	for {
		res := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var term *TerminalError
		if errors.As(res.err, &term) {
			a.log.Error("agent stopping: the server ended the session for good", "code", term.Code, "status", term.Status, "reason", term.Reason)
			return term
		}
		if res.connected && res.lasted >= a.cfg.StableAfter {
			attempt = 0
		}
		delay := a.cfg.Backoff.Delay(attempt, a.cfg.Rand)
		if attempt < 64 {
			attempt++
		}
		if res.retryAfter > delay {
			delay = min(res.retryAfter, a.cfg.MaxRetryAfter)
		}
		a.log.Warn("disconnected; reconnecting", "err", a.red.Err(res.err), "in", delay.Round(time.Millisecond), "attempt", attempt)
		t := clk.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// sessionResult is how one connection attempt ended.
type sessionResult struct {
	err        error
	connected  bool          // the welcome arrived
	lasted     time.Duration // from welcome to the end (schedule clock)
	retryAfter time.Duration // the server asked to wait this long
}

// dial performs the handshake and reads the welcome.
// seen is called for every frame, control frames included.
func (a *Agent) dial(ctx context.Context, seen func()) (*websocket.Conn, *welcome, sessionResult) {
	hctx, cancel := context.WithTimeout(ctx, a.cfg.HandshakeTimeout)
	defer cancel()
	subs := []string{a.cfg.Key}
	if a.cfg.OfferSubprotocol {
		subs = append(subs, protocol.Subprotocol)
	}
	conn, resp, err := websocket.Dial(hctx, a.cfg.URL, &websocket.DialOptions{
		HTTPClient:   a.client,
		Subprotocols: subs, // what the library accepts as the server's echo
		OnPingReceived: func(context.Context, []byte) bool {
			seen()
			return true // answer it
		},
		OnPongReceived: func(context.Context, []byte) {
			seen()
			a.log.Debug("pong")
		},
	})
	if err != nil {
		return nil, nil, a.refusal(resp, err)
	}
	if p := conn.Subprotocol(); p != "" && !(p == protocol.Subprotocol && a.cfg.OfferSubprotocol) {
		// A server echoing the credential (or anything unexpected) is not
		// one we should talk to.
		conn.CloseNow()
		return nil, nil, sessionResult{err: errors.New("server echoed an unexpected subprotocol")}
	}
	conn.SetReadLimit(a.cfg.MaxFrameBytes)
	typ, data, err := conn.Read(hctx)
	seen()
	if err != nil {
		conn.CloseNow()
		return nil, nil, sessionResult{err: a.closeError(fmt.Errorf("waiting for welcome: %w", err))}
	}
	w, err := parseWelcome(typ, data)
	if err != nil {
		conn.Close(protocol.ClosePolicy, "expected a welcome frame")
		return nil, nil, sessionResult{err: err}
	}
	return conn, w, sessionResult{}
}

// refusal interprets a failed handshake.
func (a *Agent) refusal(resp *http.Response, err error) sessionResult {
	res := sessionResult{err: fmt.Errorf("handshake: %w", a.red.Err(err))}
	if resp == nil {
		return res
	}
	msg := ""
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		msg = a.red.clean(serverMessage(b), 200)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), a.cfg.Clock.Now())
	case http.StatusUnauthorized, http.StatusForbidden:
		if !a.cfg.RetryUnauthorized {
			res.err = &TerminalError{Status: resp.StatusCode, Reason: msg}
			return res
		}
	}
	res.err = fmt.Errorf("handshake refused with HTTP %d %s: %w", resp.StatusCode, strconv.Quote(msg), res.err)
	return res
}

// serverMessage extracts the message of an API error body
// ({"error":{"code","message"}}), or returns the body as text.
func serverMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	return strings.TrimSpace(string(b))
}

// parseRetryAfter reads delta-seconds or an HTTP date; hostile or
// unparsable values yield 0 (the backoff applies).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// parseWelcome validates the server's first frame.
func parseWelcome(typ websocket.MessageType, data []byte) (*welcome, error) {
	if typ != websocket.MessageText {
		return nil, errors.New("first frame is not a text frame")
	}
	var w welcome
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("welcome frame: invalid JSON: %w", err)
	}
	if w.Type != protocol.TypeWelcome {
		return nil, fmt.Errorf("first frame has type %.32q, want welcome", w.Type)
	}
	if w.Identity.Kind != "" && w.Identity.Kind != "device" {
		return nil, fmt.Errorf("the key belongs to a %.16q, not a device", w.Identity.Kind)
	}
	if err := validID("identity id", w.Identity.ID); err != nil {
		return nil, fmt.Errorf("welcome frame: %w", err)
	}
	return &w, nil
}

// closeError turns a read error into a TerminalError for terminal close codes.
func (a *Agent) closeError(err error) error {
	code := int(websocket.CloseStatus(err))
	if code < 0 {
		return err
	}
	var ce websocket.CloseError
	reason := ""
	if errors.As(err, &ce) {
		reason = a.red.clean(ce.Reason, 123)
	}
	if Terminal(code) {
		return &TerminalError{Code: code, Reason: reason}
	}
	return fmt.Errorf("server closed the connection (code %d %q): %w", code, reason, errClosed)
}

var errClosed = errors.New("connection closed by the server")

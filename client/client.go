package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the server, e.g. https://chat.example.com:8443.
	BaseURL string
	// TLS configures certificate checks (nil: the system's roots). To
	// trust a self-signed server, put its certificate in RootCAs.
	TLS *tls.Config
	// Name and Password sign in; alternatively set RefreshToken, or
	// TokenSource for a caller that mints access tokens itself (the
	// server's own bots).
	Name, Password string
	RefreshToken   string
	TokenSource    func(ctx context.Context) (token string, expires time.Time, err error)
	// Backoff shapes reconnection delays.
	Backoff Backoff
	// EventBuffer is the capacity of Events(); default 1024. The
	// application must keep reading: while the buffer is full the client
	// stops reading its connection, and a server that waits too long
	// disconnects it as a slow consumer (then it reconnects and resumes).
	EventBuffer int
	Log         *slog.Logger
}

// Message is a chat message as delivered.
type Message struct {
	Type      string    `json:"type"`
	Channel   string    `json:"channel"`
	Seq       int64     `json:"seq"`
	MessageID string    `json:"message_id"`
	From      string    `json:"from"`
	FromName  string    `json:"from_name,omitempty"`
	FromKind  string    `json:"from_kind,omitempty"` // "user", "bot" or "device"
	Body      string    `json:"body"`
	TS        time.Time `json:"ts"`
	Edited    bool      `json:"edited,omitempty"`
	Deleted   bool      `json:"deleted,omitempty"`
}

// Event is something that arrived: a message (Message set, in order and
// once), or any other frame (Raw holds it).
type Event struct {
	Type    string
	Message *Message
	Raw     json.RawMessage
}

// Ack confirms a stored message.
type Ack struct {
	ID        string `json:"id"`
	MessageID string `json:"message_id"`
	Seq       int64  `json:"seq"`
}

// Error is an error frame or an HTTP error from the server.
type Error struct {
	Status  int    // HTTP status, or 0 for a WebSocket error frame
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("server: %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("server: %s: %s", e.Code, e.Message)
}

// ErrTerminal wraps a close code that says not to reconnect (revoked,
// kicked, bad credentials).
var ErrTerminal = errors.New("client: connection closed for good")

// Client is a connection to a server, kept alive across drops.
type Client struct {
	cfg    Config
	http   *http.Client
	log    *slog.Logger
	events chan Event

	mu      sync.Mutex
	access  string    // guarded by mu
	refresh string    // guarded by mu
	expires time.Time // guarded by mu
	user    User      // guarded by mu
	conn    *websocket.Conn
	// Delivery state per conversation: the last seq emitted and messages
	// that arrived ahead of a gap.
	pos      map[string]int64              // guarded by mu
	ahead    map[string]map[int64]*Message // guarded by mu
	filling  map[string]bool               // conversations with a gap being filled; guarded by mu
	resuming map[string]bool               // conversations waiting for their "resumed"; guarded by mu
	pending  map[string]*pendingReq        // request id → waiter; guarded by mu
	connCh   chan struct{}                 // closed when a connection is up; guarded by mu

	bg sync.WaitGroup // the current session's helper goroutines
}

// User is the signed-in account.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

type pendingReq struct {
	frame []byte
	reply chan json.RawMessage
}

// New returns a client; call Login (or set RefreshToken), then Run.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL must be http(s)://host[:port], got %q", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 1024
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{TLSClientConfig: cfg.TLS, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 4}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &Client{
		cfg: cfg, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, log: cfg.Log,
		events: make(chan Event, cfg.EventBuffer), refresh: cfg.RefreshToken,
		pos: map[string]int64{}, ahead: map[string]map[int64]*Message{}, pending: map[string]*pendingReq{},
		filling: map[string]bool{}, resuming: map[string]bool{},
		connCh: make(chan struct{}),
	}, nil
}

// Events delivers messages (in order, once each) and other frames.
func (c *Client) Events() <-chan Event { return c.events }

// User returns the signed-in account.
func (c *Client) User() User { c.mu.Lock(); defer c.mu.Unlock(); return c.user }

// Close releases idle HTTP connections. Stop Run by cancelling its context.
func (c *Client) Close() { c.http.CloseIdleConnections() }

type session struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	User         User   `json:"user"`
}

func (c *Client) setSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.access, c.refresh = s.AccessToken, s.RefreshToken
	c.expires = time.Now().Add(time.Duration(s.ExpiresIn) * time.Second)
	c.user = s.User
}

// Login signs in with the configured name and password.
func (c *Client) Login(ctx context.Context) error {
	var s session
	if err := c.do(ctx, "POST", "/api/v1/auth/login", false, map[string]string{"name": c.cfg.Name, "password": c.cfg.Password}, &s); err != nil {
		return err
	}
	c.setSession(&s)
	return nil
}

// refreshTokens spends the refresh token for a new pair (or asks the
// token source).
func (c *Client) refreshTokens(ctx context.Context) error {
	if c.cfg.TokenSource != nil {
		tok, exp, err := c.cfg.TokenSource(ctx)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.access, c.expires = tok, exp
		c.mu.Unlock()
		return nil
	}
	c.mu.Lock()
	rt := c.refresh
	c.mu.Unlock()
	if rt == "" {
		return errors.New("client: no refresh token; sign in first")
	}
	var s session
	if err := c.do(ctx, "POST", "/api/v1/auth/refresh", false, map[string]string{"refresh_token": rt}, &s); err != nil {
		return err
	}
	c.setSession(&s)
	return nil
}

// token returns a valid access token, refreshing it when it has under a
// minute left.
func (c *Client) token(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, exp := c.access, c.expires
	c.mu.Unlock()
	if tok != "" && time.Until(exp) > time.Minute {
		return tok, nil
	}
	if err := c.refreshTokens(ctx); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.access, nil
}

// do performs a JSON request; auth adds the access token.
func (c *Client) do(ctx context.Context, method, path string, auth bool, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		tok, err := c.token(ctx)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		var e struct{ Error Error }
		json.Unmarshal(data, &e)
		e.Error.Status = res.StatusCode
		return &e.Error
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("client: decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Get performs an authenticated GET of a JSON resource.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, "GET", path, true, nil, out)
}

// Post performs an authenticated POST of JSON.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, "POST", path, true, in, out)
}

// Channel is a conversation as listed.
type Channel struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Kind   string `json:"kind,omitempty"`
	Member bool   `json:"member,omitempty"`
	Unread int    `json:"unread,omitempty"`
}

// Channels lists the caller's conversations and the public channels,
// following the list's pages.
func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	var all []Channel
	after := ""
	for {
		var out struct {
			Channels   []Channel `json:"channels"`
			NextCursor string    `json:"next_cursor"`
		}
		q := url.Values{"limit": {"500"}}
		if after != "" {
			q.Set("after", after)
		}
		if err := c.Get(ctx, "/api/v1/channels?"+q.Encode(), &out); err != nil {
			return all, err
		}
		all = append(all, out.Channels...)
		if out.NextCursor == "" || out.NextCursor == after {
			return all, nil
		}
		after = out.NextCursor
	}
}

// HistoryAfter returns up to limit messages with seq > after, oldest
// first (after 0: from the first message), and whether more follow.
func (c *Client) HistoryAfter(ctx context.Context, conv string, after int64, limit int) ([]Message, bool, error) {
	return c.history(ctx, conv, url.Values{"after": {strconv.FormatInt(after, 10)}}, limit)
}

// HistoryBefore returns up to limit of the newest messages with seq <
// before (before 0: the newest of all), oldest first, and whether older
// ones exist.
func (c *Client) HistoryBefore(ctx context.Context, conv string, before int64, limit int) ([]Message, bool, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	return c.history(ctx, conv, q, limit)
}

func (c *Client) history(ctx context.Context, conv string, q url.Values, limit int) ([]Message, bool, error) {
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Messages []Message `json:"messages"`
		HasMore  bool      `json:"has_more"`
	}
	err := c.Get(ctx, "/api/v1/channels/"+url.PathEscape(conv)+"/messages?"+q.Encode(), &out)
	return out.Messages, out.HasMore, err
}

func newID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return "c" + hex.EncodeToString(b)
}

package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// Client is one live connection's state. It implements hub.Client.
type Client struct {
	// Static after the handshake.
	gw        *Gateway
	conn      *ws.Conn // set in OnOpen
	ident     Identity
	ip        string
	userAgent string
	session   string

	// Owned by the connection's reader (frames are handled one at a time).
	limiter ratelimit.Bucket
	abuse   ratelimit.Bucket

	epoch atomic.Int64 // the token's session epoch; a refresh moves it

	mu      sync.Mutex
	expires time.Time   // guarded by mu; when the credential expires
	expiry  *time.Timer // guarded by mu; closes the connection at expires
}

func randomSuffix() string {
	var b [5]byte
	rand.Read(b[:])
	return lowerBase32.EncodeToString(b[:])
}

// lowerBase32 is base32.StdEncoding in lower case (5 bytes: no padding).
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567")

// ConnID implements hub.Client.
func (c *Client) ConnID() uint64 { return c.conn.ID() }

// Identity implements hub.Client: the ID of the user, bot or device.
func (c *Client) Identity() string { return c.ident.ID }

// Ident returns the connection's full identity.
func (c *Client) Ident() Identity { return c.ident }

// Session returns the connection's session id (shown in welcome).
func (c *Client) Session() string { return c.session }

// RemoteIP returns the client's address.
func (c *Client) RemoteIP() string { return c.ip }

// Send implements hub.Client. It is the one way a frame reaches the
// connection (fan-out, direct sends, acks, presence, errors alike): it
// queues m without blocking, and a frame that does not fit is never dropped
// quietly: the drop is counted by reason and the connection closed as a
// slow consumer (4001), so the client reconnects and resumes.
func (c *Client) Send(m *ws.PreparedMessage) error {
	err := c.conn.SendPrepared(m)
	if err == nil {
		return nil
	}
	var reason string
	switch {
	case errors.Is(err, ws.ErrQueueFull):
		reason = "queue_full"
	case errors.Is(err, ws.ErrMessageTooLarge):
		reason = "too_large"
	default:
		return err // closing already: what it still had queued goes with it
	}
	c.gw.metrics.drops.WithLabelValues(reason).Inc()
	c.Close(protocol.CloseSlowConsumer)
	return err
}

// SendJSON encodes v and sends it to this connection only (through Send).
func (c *Client) SendJSON(v any) error {
	return c.Send(ws.NewPreparedMessage(true, protocol.Marshal(v)))
}

// Close implements hub.Client: it starts closing with code and its
// standard reason, without blocking.
func (c *Client) Close(code int) { c.conn.CloseWith(code, protocol.CloseReason(code)) }

// replyError sends an error frame for err answering id. Application errors keep
// their message; others are logged and reported as internal errors.
func (c *Client) replyError(id string, err error) {
	code := unhidra.ErrorCode(err)
	frame := protocol.NewError(id, code, unhidra.ErrorMessage(err))
	if code == protocol.ErrInternal {
		c.gw.log.Error("frame handler failed", "session", c.session, "err", err)
	}
	if ra := unhidra.RetryAfter(err); ra > 0 {
		frame.RetryAfter = int(ra)
	}
	c.SendJSON(frame)
}

// setExpiry arms the timer that closes the connection when its credential
// expires; a refresh moves it.
func (c *Client) setExpiry(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expires = t
	if t.IsZero() {
		return
	}
	d := time.Until(t)
	if c.expiry == nil {
		c.expiry = time.AfterFunc(d, func() { c.Close(protocol.CloseTokenExpired) })
		return
	}
	c.expiry.Reset(d)
}

func (c *Client) stopExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
}

// connHandler adapts the gateway to the transport's events.
type connHandler struct{ g *Gateway }

func (h connHandler) OnOpen(wc *ws.Conn) {
	g := h.g
	c := wc.Value().(*Client)
	c.conn = wc
	c.setExpiry(c.ident.ExpiresAt)
	tc := g.engine.Config()
	w := protocol.Welcome{
		Type:              protocol.TypeWelcome,
		Protocol:          protocol.Subprotocol,
		Session:           c.session,
		Identity:          protocol.Identity{ID: c.ident.ID, Name: c.ident.Name, Kind: c.ident.Kind},
		ServerTime:        time.Now().UTC(),
		HeartbeatInterval: int(g.cfg.HeartbeatInterval / time.Second),
		PingInterval:      int(tc.PingInterval / time.Second),
		IdleTimeout:       int(tc.IdleTimeout / time.Second),
		TokenExpiresAt:    c.ident.ExpiresAt,
		Limits: protocol.Limits{
			MaxFrameBytes:     int(tc.MaxMessageSize),
			MessagesPerSecond: float64(time.Second) / float64(g.cfg.MessageRate.Every),
			Burst:             g.cfg.MessageRate.Burst,
		},
	}
	for _, f := range g.onWelcome {
		f(c, &w)
	}
	c.Send(ws.NewPreparedMessage(true, protocol.MarshalWelcome(&w)))
	// Only now can anything be routed to the connection: the welcome is
	// always its first frame.
	g.router.Add(c)
	// A revocation that raced the handshake (checked before this
	// connection could be found) is caught here.
	if g.identCheck != nil && !g.identCheck(g.ctx, c.ident) {
		c.Close(protocol.CloseRevoked)
		return
	}
	for _, f := range g.onConnect {
		f(c)
	}
}

// OnControl counts the peer's pings toward the frame rate: a flood of
// them is refused like one of messages (no error frame to send, the same
// closing with 4004 once the tolerance is spent).
func (h connHandler) OnControl(wc *ws.Conn, _ ws.Opcode) {
	c := wc.Value().(*Client)
	now := time.Now()
	if ok, _ := c.limiter.Allow(now, 1); ok {
		return
	}
	h.g.metrics.rateLimited.Inc()
	if ok, _ := c.abuse.Allow(now, 1); !ok {
		c.Close(protocol.CloseRateLimited)
	}
}

func (h connHandler) OnMessage(wc *ws.Conn, text bool, data []byte) {
	g := h.g
	c := wc.Value().(*Client)
	now := time.Now()
	e, err := protocol.Decode(data)
	// Frames of unmetered types (command acks, bounded by the command
	// window) are not charged here; their handler charges the ones it
	// does not expect (Client.Meter). Everything else is.
	if (err != nil || !g.unmetered[e.Type]) && !c.meter(now) {
		return
	}
	if err != nil {
		g.metrics.badFrames.Inc()
		c.SendJSON(protocol.NewError("", protocol.ErrBadFrame, err.Error()))
		return
	}
	handler, ok := g.handlers[e.Type]
	if !ok {
		c.SendJSON(protocol.NewError(e.ID, protocol.ErrUnknownType, "Unknown frame type "+quote(e.Type)+"."))
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, 30*time.Second)
	defer cancel()
	if err := handler(ctx, c, e); err != nil {
		c.replyError(e.ID, err)
	}
}

// meter charges one frame to the connection's rate limit. Over the limit
// it answers rate_limited (or closes the connection with
// CloseRateLimited when the client keeps going) and reports false: the
// frame must then be dropped. Called on the connection's reader.
func (c *Client) meter(now time.Time) bool {
	ok, retry := c.limiter.Allow(now, 1)
	if ok {
		return true
	}
	c.gw.metrics.rateLimited.Inc()
	if ok, _ := c.abuse.Allow(now, 1); !ok {
		c.Close(protocol.CloseRateLimited)
		return false
	}
	frame := protocol.NewError("", protocol.ErrRateLimited, "Too many frames; slow down.")
	frame.RetryAfter = max(1, int((retry+time.Second-1)/time.Second))
	c.SendJSON(frame)
	return false
}

// Meter charges the frame being handled to the connection's rate limit:
// handlers of types registered with HandleUnmetered call it for frames
// they did not expect. It reports false when the frame must be dropped
// (the client was told, or disconnected). Call only from a frame handler.
func (c *Client) Meter() bool { return c.meter(time.Now()) }

func quote(s string) string { return "\"" + strings.ToValidUTF8(s, "?") + "\"" }

func (h connHandler) OnClose(wc *ws.Conn, err error) {
	g := h.g
	c, _ := wc.Value().(*Client)
	if c == nil {
		return
	}
	c.stopExpiry()
	if c.conn != nil { // OnOpen ran
		g.router.Remove(c)
		for _, f := range g.onDisconnect {
			f(c)
		}
	}
	g.admit.release(c.ip, c.ident.ID)
	var ce *ws.CloseError
	if errors.As(err, &ce) && errors.Is(ce.Err, ws.ErrIdleTimeout) {
		g.metrics.pingTimeouts.Inc()
	}
	g.metrics.closes.WithLabelValues(closeCause(err)).Inc()
	g.metrics.addClosed(wc.Stats())
}

func handlePing(ctx context.Context, c *Client, e *protocol.Envelope) error {
	return c.SendJSON(struct {
		Type string `json:"type"`
		ID   string `json:"id,omitempty"`
	}{protocol.TypePong, e.ID})
}

// handleRefresh replaces the connection's access token before it expires.
// The new token must belong to the same identity.
func (g *Gateway) handleRefresh(ctx context.Context, c *Client, e *protocol.Envelope) error {
	if c.ident.Kind == KindDevice {
		return unhidra.Errorf(protocol.ErrInvalid, "Devices authenticate with keys; there is nothing to refresh.")
	}
	if e.Token == "" || g.tokenAuth == nil {
		return unhidra.Errorf(protocol.ErrInvalid, "A refresh needs a token.")
	}
	ident, err := g.tokenAuth(ctx, e.Token)
	if err != nil {
		return err
	}
	if ident.ID != c.ident.ID {
		return unhidra.Errorf(protocol.ErrForbidden, "The token belongs to someone else.")
	}
	c.epoch.Store(ident.Epoch)
	c.setExpiry(ident.ExpiresAt)
	return c.SendJSON(struct {
		Type      string    `json:"type"`
		ID        string    `json:"id,omitempty"`
		ExpiresAt time.Time `json:"token_expires_at"`
	}{protocol.TypeAck, e.ID, ident.ExpiresAt})
}

// closeCause names why a connection ended, for closes_total{reason}.
func closeCause(err error) string {
	var ce *ws.CloseError
	if !errors.As(err, &ce) {
		return "other"
	}
	switch {
	case errors.Is(ce.Err, ws.ErrLocalClose):
		switch ce.Code {
		case protocol.CloseShutdown:
			return "shutdown"
		case protocol.CloseSlowConsumer:
			return "slow_consumer"
		case protocol.CloseRateLimited:
			return "rate_limited"
		case protocol.CloseTokenExpired:
			return "token_expired"
		case protocol.CloseReplaced:
			return "replaced"
		case protocol.CloseRevoked:
			return "revoked"
		case protocol.CloseKicked:
			return "kicked"
		}
		return "server_other"
	case errors.Is(ce.Err, ws.ErrStalled):
		return "slow_consumer"
	case errors.Is(ce.Err, ws.ErrPeerClosed):
		return "client"
	case errors.Is(ce.Err, ws.ErrIdleTimeout):
		return "idle_timeout"
	case errors.Is(ce.Err, ws.ErrReadTimeout):
		return "read_timeout"
	case errors.Is(ce.Err, ws.ErrWrite):
		return "write_error"
	case errors.Is(ce.Err, ws.ErrProtocol):
		return "protocol_error"
	case errors.Is(ce.Err, ws.ErrEngineClosed):
		return "engine_closed"
	}
	return "other"
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/lazyctx"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// Identity is who a connection authenticated as.
type Identity struct {
	Kind    string // KindPerson, KindBot or KindDevice
	ID      string
	Name    string
	Admin   bool
	OwnerID string // devices: the owning user
	// Epoch is the session epoch of the token (people and bots); the
	// connection closes when the identity's epoch moves past it.
	Epoch int64
	// ExpiresAt is when the credential expires; the connection must send a
	// fresh token before then or be closed with CloseTokenExpired. Zero
	// means never (device keys).
	ExpiresAt time.Time
}

// Authenticator checks a credential from the handshake. It returns an
// error with store code protocol.ErrUnauthorized for bad credentials; anything else is
// a failure on our side.
type Authenticator func(ctx context.Context, credential string) (Identity, error)

// Config configures a Gateway. Zero fields get the documented defaults.
type Config struct {
	Transport ws.Config
	Admission AdmissionLimits
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may connect; empty means only the server's own origin. "*" allows any.
	AllowedOrigins []string
	// MessageRate bounds client frames per connection. Default 20/s, burst 40.
	MessageRate ratelimit.Limit
	// AbuseTolerance is how many refused frames (refilling one per second)
	// a client may send before it is disconnected. Default 10.
	AbuseTolerance int
	// HeartbeatInterval is what devices are told to use. Default 60 s.
	HeartbeatInterval time.Duration
	// DrainWindow spreads the closing of connections on shutdown, so that
	// clients do not all reconnect in the same second. Default 10 s.
	DrainWindow time.Duration
}

// FrameHandler handles one client frame type. It runs on the connection's
// reader (frames of one connection are handled in order). A returned error
// becomes an error frame answering e.ID: application errors keep their code
// and message, anything else is logged and reported as "internal".
type FrameHandler func(ctx context.Context, c *Client, e *protocol.Envelope) error

// Gateway serves GET /ws.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	engine  *ws.Engine
	router  *hub.Router
	hub     *hub.Hub
	admit   *admission
	metrics *Metrics

	// Static after Start.
	tokenAuth, keyAuth Authenticator
	identCheck         func(ctx context.Context, id Identity) bool
	closeSub           bus.Subscription
	handlers           map[string]FrameHandler
	unmetered          map[string]bool // frame types not charged to the rate limit before their handler
	onWelcome          []func(c *Client, w *protocol.Welcome)
	onConnect          []func(c *Client)
	onDisconnect       []func(c *Client)

	ctx      context.Context // cancelled by Close; parent of handler contexts
	cancel   context.CancelFunc
	draining atomic.Bool
	nextSess atomic.Uint64
}

// New returns a gateway routing through r (a hub joined to the cluster's
// bus). Register handlers and hooks, then mount it.
func New(cfg Config, r *hub.Router, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MessageRate == (ratelimit.Limit{}) {
		cfg.MessageRate = ratelimit.Limit{Burst: 40, Every: 50 * time.Millisecond}
	}
	if cfg.AbuseTolerance <= 0 {
		cfg.AbuseTolerance = 10
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 60 * time.Second
	}
	if cfg.DrainWindow <= 0 {
		cfg.DrainWindow = 10 * time.Second
	}
	if cfg.Transport.StallCode == 0 {
		cfg.Transport.StallCode = protocol.CloseSlowConsumer // a peer that stopped reading
	}
	if cfg.Transport.IdleCloseCode == 0 {
		cfg.Transport.IdleCloseCode = protocol.CloseIdleTimeout
	}
	eng, err := ws.NewEngine(cfg.Transport, log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := r.Hub()
	g := &Gateway{
		cfg: cfg, log: log, engine: eng, router: r, hub: h, admit: newAdmission(cfg.Admission),
		metrics: newMetrics(), handlers: make(map[string]FrameHandler), unmetered: make(map[string]bool), ctx: ctx, cancel: cancel,
	}
	g.metrics.connsFunc = g.countByKind
	g.metrics.liveFunc = g.liveStats
	g.metrics.writesFunc = func() uint64 { return eng.FlushStats().Writes }
	g.Handle(protocol.TypePing, handlePing)
	g.Handle(protocol.TypeRefresh, g.handleRefresh)
	sub, err := r.Bus().Subscribe(closeSubject, g.onClusterClose)
	if err != nil {
		eng.Close()
		cancel()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.closeSub = sub
	return g, nil
}

// closeSubject carries "close this identity's connections" to every node.
const closeSubject = "ctl.close"

type closeOrder struct {
	Identity string `json:"identity"`
	Code     int    `json:"code"`
}

func (g *Gateway) onClusterClose(data []byte) {
	var o closeOrder
	if json.Unmarshal(data, &o) != nil || o.Identity == "" || o.Code < 1000 || o.Code > 4999 {
		g.log.Warn("malformed close order on the bus")
		return
	}
	for _, c := range g.hub.Connections(o.Identity) {
		c.Close(o.Code)
	}
}

// SetAuthenticators installs the credential checks: tokens for people and
// bots, keys for devices (nil refuses devices). Call before serving.
func (g *Gateway) SetAuthenticators(token, key Authenticator) { g.tokenAuth, g.keyAuth = token, key }

// SetIdentityCheck installs a check run once a connection is registered:
// false closes it with CloseRevoked (a revocation that raced the
// handshake). Call before serving.
func (g *Gateway) SetIdentityCheck(f func(ctx context.Context, id Identity) bool) { g.identCheck = f }

// ApplyIdentityState closes, on this node, the connections an identity
// change invalidated, with CloseRevoked: those of identity whose token
// epoch is older than epoch, all of them when !active, and then also the
// devices the identity owns. It returns how many it closed. Each node gets
// the change itself (see auth.Service.IdentityChanged).
func (g *Gateway) ApplyIdentityState(identity string, epoch int64, active bool) int {
	n := 0
	g.engine.Range(func(wc *ws.Conn) bool {
		c, ok := wc.Value().(*Client)
		if !ok {
			return true
		}
		stale := c.ident.ID == identity && c.ident.Kind != KindDevice && (!active || c.epoch.Load() < epoch)
		orphan := !active && c.ident.Kind == KindDevice && (c.ident.OwnerID == identity || c.ident.ID == identity)
		if stale || orphan {
			wc.CloseWith(protocol.CloseRevoked, protocol.CloseReason(protocol.CloseRevoked))
			n++
		}
		return true
	})
	if n > 0 {
		g.log.Info("closed connections after an identity change", "identity", identity, "closed", n, "active", active)
	}
	return n
}

// Handle registers the handler of a frame type. Call before serving.
func (g *Gateway) Handle(typ string, h FrameHandler) { g.handlers[typ] = h }

// HandleUnmetered registers the handler of a frame type whose frames are
// not charged to the connection's frame rate limit before the handler
// runs: the handler charges the ones it did not expect with
// Client.Meter. Device acks use it: their number is bounded by the
// commands the server sent, and a device that answers a burst of commands
// at once must not be disconnected for it. Call before serving.
func (g *Gateway) HandleUnmetered(typ string, h FrameHandler) {
	g.handlers[typ] = h
	g.unmetered[typ] = true
}

// OnWelcome registers a hook that may add to a connection's welcome frame
// before it is sent (e.g. limits that concern one kind of client). It runs
// on the connection's reader and must not send. Call before serving.
func (g *Gateway) OnWelcome(f func(c *Client, w *protocol.Welcome)) {
	g.onWelcome = append(g.onWelcome, f)
}

// OnConnect registers a hook run after a connection's welcome frame
// (on its reader; it may send). Call before serving.
func (g *Gateway) OnConnect(f func(c *Client)) { g.onConnect = append(g.onConnect, f) }

// OnDisconnect registers a hook run once a connection is gone. Call before
// serving.
func (g *Gateway) OnDisconnect(f func(c *Client)) { g.onDisconnect = append(g.onDisconnect, f) }

// Hub returns the gateway's local routing hub.
func (g *Gateway) Hub() *hub.Hub { return g.hub }

// Router returns the cluster-wide router (use it to publish and subscribe
// topics so that every node sees them).
func (g *Gateway) Router() *hub.Router { return g.router }

// Metrics returns the gateway's Prometheus collectors.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// Len returns the number of live connections.
func (g *Gateway) Len() int { return g.engine.Len() }

// Draining reports whether the gateway refuses new connections.
func (g *Gateway) Draining() bool { return g.draining.Load() }

// Mount adds the gateway's routes: the WebSocket endpoint and the
// administrators' view of live connections.
func (g *Gateway) Mount(mux *http.ServeMux, h httpx.Helpers) {
	mux.Handle("GET /ws", g.handleUpgrade(h))
	mux.Handle("GET /api/v1/admin/connections", h.RequireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns := g.Connections()
		if conns == nil {
			conns = []ConnInfo{}
		}
		h.JSON(w, http.StatusOK, map[string]any{"connections": conns, "count": len(conns)})
	})))
	mux.Handle("DELETE /api/v1/admin/connections/{session}", h.RequireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.CloseSession(r.PathValue("session"), protocol.CloseKicked) {
			h.Error(w, r, unhidra.Errorf(protocol.ErrNotFound, "No such connection."))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
}

// handleUpgrade is GET /ws: every check that can refuse a client happens
// before the upgrade, so refusals are ordinary HTTP errors with a status,
// a JSON body and Retry-After where waiting helps.
func (g *Gateway) handleUpgrade(h httpx.Helpers) http.Handler {
	clientIP := h.ClientIP
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		refuse := func(ref *refusal) {
			g.metrics.refusals.WithLabelValues(ref.reason).Inc()
			if ref.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int((ref.retryAfter+time.Second-1)/time.Second)))
			}
			// The status is the refusal's own (426 has no application
			// error code of its own), the body the API's error shape.
			h.JSON(w, ref.status, map[string]any{"error": map[string]string{
				"code": protocol.CodeForStatus(ref.status), "message": ref.message}})
		}
		if g.draining.Load() {
			refuse(&refusal{"draining", 503, "The server is shutting down; reconnect shortly.", 2 * time.Second})
			return
		}
		if httpx.TokenInQuery(r) {
			// The query is never logged anywhere (the API's request log
			// records the path only).
			refuse(&refusal{"query_credentials", 400, "Credentials are not accepted in the URL; send them in Sec-WebSocket-Protocol.", 0})
			return
		}
		if err := ws.CheckUpgrade(r); err != nil {
			status := http.StatusBadRequest
			var he *ws.HandshakeError
			if errors.As(err, &he) {
				status = he.Status
				if status == http.StatusUpgradeRequired {
					w.Header().Set("Sec-WebSocket-Version", "13")
				}
			}
			refuse(&refusal{"bad_handshake", status, "Not a valid WebSocket handshake.", 0})
			return
		}
		if !originAllowed(r, g.cfg.AllowedOrigins) {
			refuse(&refusal{"origin", 403, "Origin not allowed.", 0})
			return
		}
		ip, now := clientIP(r), time.Now()
		if ok, retry := g.admit.ipRate.Allow(ip, now); !ok {
			refuse(&refusal{"ip_rate", 429, "Too many connection attempts from this address.", retry})
			return
		}
		creds, problem := parseSubprotocols(r.Header.Values("Sec-WebSocket-Protocol"))
		bucket := credentialBucket(ip, creds)
		if ref := g.admit.checkAuthThrottle(ip, bucket, now); ref != nil {
			refuse(ref)
			return
		}
		if problem != "" {
			g.admit.authFailed(ip, bucket, now)
			refuse(&refusal{"no_credentials", 401, problem, 0})
			return
		}
		ident, err := g.authenticate(r.Context(), creds)
		if err != nil {
			if unhidra.ErrorCode(err) == protocol.ErrUnauthorized {
				g.admit.authFailed(ip, bucket, now)
				refuse(&refusal{"bad_credentials", 401, unhidra.ErrorMessage(err), 0})
				return
			}
			g.log.Error("handshake authentication failed", "err", err)
			refuse(&refusal{"auth_unavailable", 503, "Authentication is temporarily unavailable.", 2 * time.Second})
			return
		}
		if ref := g.admit.acquire(ip, ident.ID, now); ref != nil {
			refuse(ref)
			return
		}
		// The 101 goes out with the welcome, in one write (AdoptUpgraded).
		netConn, buffered, response, err := ws.UpgradeDeferred(w, r, creds.echo, nil)
		if err != nil {
			g.admit.release(ip, ident.ID)
			g.metrics.refusals.WithLabelValues("upgrade_failed").Inc()
			g.log.Debug("upgrade failed", "err", err)
			return
		}
		c := &Client{
			gw: g, ident: ident, ip: ip, userAgent: truncate(r.UserAgent(), 256),
			session: unhidra.PrefixSession + "_" + strconv.FormatUint(g.nextSess.Add(1), 36) + "_" + randomSuffix(),
			limiter: ratelimit.NewBucket(g.cfg.MessageRate, now),
			abuse:   ratelimit.NewBucket(ratelimit.Limit{Burst: g.cfg.AbuseTolerance, Every: time.Second}, now),
		}
		c.epoch.Store(ident.Epoch)
		wc, err := g.engine.AdoptUpgraded(netConn, buffered, response, connHandler{g}, c)
		if err != nil {
			g.admit.release(ip, ident.ID) // AdoptUpgraded closed netConn
			g.log.Warn("serve connection", "err", err)
			return
		}
		g.metrics.upgrades.Inc()
		g.metrics.handshake.Observe(time.Since(start).Seconds())
		// This goroutine ends here anyway: it opens the connection (the
		// welcome, chat's subscriptions) instead of a new one.
		wc.Run()
	})
}

func (g *Gateway) authenticate(ctx context.Context, c credentials) (Identity, error) {
	// The token check usually waits on nothing (identity cache).
	ctx, cancel := lazyctx.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch {
	case c.token != "" && g.tokenAuth != nil:
		return g.tokenAuth(ctx, c.token)
	case c.key != "" && g.keyAuth != nil:
		return g.keyAuth(ctx, c.key)
	}
	return Identity{}, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid credentials.")
}

// CloseIdentity closes every connection of an identity with code (e.g. a
// revoked device key or a disabled account), on every node of the cluster.
func (g *Gateway) CloseIdentity(identity string, code int) {
	data, _ := json.Marshal(closeOrder{Identity: identity, Code: code})
	if err := g.router.Bus().Publish(context.Background(), closeSubject, data); err != nil {
		// The bus is down: at least this node acts.
		g.log.Error("broadcast close order", "err", err)
		g.onClusterClose(data)
	}
}

// CloseSession closes one connection by session id (an administrator's kick).
func (g *Gateway) CloseSession(session string, code int) bool {
	found := false
	g.engine.Range(func(wc *ws.Conn) bool {
		if c, ok := wc.Value().(*Client); ok && c.session == session {
			wc.CloseWith(code, protocol.CloseReason(code))
			found = true
			return false
		}
		return true
	})
	return found
}

// Drain refuses new connections, then closes live ones with CloseShutdown
// spread evenly over the drain window (shortened if ctx ends sooner), and
// waits for them to go. Call Close afterwards.
func (g *Gateway) Drain(ctx context.Context) error {
	g.draining.Store(true)
	// Work on transport connections: a connection whose OnOpen has not run
	// yet has no Client.conn.
	var conns []*ws.Conn
	g.engine.Range(func(wc *ws.Conn) bool {
		conns = append(conns, wc)
		return true
	})
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	window := g.cfg.DrainWindow
	if dl, ok := ctx.Deadline(); ok {
		// Keep a third of the remaining time for close handshakes.
		if rest := time.Until(dl) * 2 / 3; rest < window {
			window = max(rest, 0)
		}
	}
	start := time.Now()
	for i, c := range conns {
		if len(conns) > 1 {
			at := start.Add(window * time.Duration(i) / time.Duration(len(conns)-1))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		c.CloseWith(protocol.CloseShutdown, protocol.CloseReason(protocol.CloseShutdown))
	}
	return g.engine.Shutdown(ctx, protocol.CloseShutdown, protocol.CloseReason(protocol.CloseShutdown))
}

// Close stops the gateway: every remaining connection is dropped and the
// transport's goroutines end. Handlers' contexts are cancelled.
func (g *Gateway) Close() error {
	g.draining.Store(true)
	if g.closeSub != nil {
		g.closeSub.Unsubscribe()
	}
	err := g.engine.Close()
	g.cancel()
	return err
}

func (g *Gateway) countByKind() map[string]int {
	out := map[string]int{KindPerson: 0, KindBot: 0, KindDevice: 0}
	g.engine.Range(func(wc *ws.Conn) bool {
		if c, ok := wc.Value().(*Client); ok {
			out[c.ident.Kind]++
		}
		return true
	})
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// liveStats sums the traffic counters and the queued frames of the live
// connections.
func (g *Gateway) liveStats() ws.Stats {
	var sum ws.Stats
	g.engine.Range(func(c *ws.Conn) bool {
		st := c.Stats()
		sum.MessagesIn += st.MessagesIn
		sum.MessagesOut += st.MessagesOut
		sum.BytesIn += st.BytesIn
		sum.BytesOut += st.BytesOut
		sum.QueuedMsgs += st.QueuedMsgs
		sum.QueuedBytes += st.QueuedBytes
		return true
	})
	return sum
}

package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// stack is a real server: SQLite, the account service, the HTTP API and
// the gateway on a TLS listener, as serve builds them.
type stack struct {
	srv      *httptest.Server
	db       *sqldb.DB
	accounts *auth.Service
	tokens   *auth.Tokens
	gw       *gateway.Gateway
	wsURL    string
	mu       sync.Mutex
	users    int
}

const testDeviceKey = "unhidra_dk_testdevice_s3cr3tvalue"

func newStack(t testing.TB, cfg gateway.Config) *stack {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	hasher, _ := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	s := &stack{db: db, tokens: &auth.Tokens{Keys: ks}}
	s.accounts = auth.NewService(db, hasher, s.tokens, auth.Limits{
		LoginPerIP: ratelimit.Limit{Burst: 1000, Every: time.Millisecond}, RegisterPerIP: ratelimit.Limit{Burst: 1000, Every: time.Millisecond},
	}, nil)
	if cfg.Transport.PingInterval == 0 {
		cfg.Transport.PingInterval = time.Second
		cfg.Transport.IdleTimeout = 5 * time.Second
	}
	s.gw, err = gateway.New(cfg, hub.NewRouter(hub.New(), &local.Bus{}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.gw.SetAuthenticators(
		func(ctx context.Context, token string) (gateway.Identity, error) {
			u, c, err := s.accounts.AuthenticateClaims(ctx, token)
			if err != nil {
				return gateway.Identity{}, err
			}
			return gateway.Identity{Kind: gateway.KindPerson, ID: u.ID, Name: u.Name, Epoch: c.Epoch, ExpiresAt: c.ExpiresAt.Time}, nil
		},
		// A key authenticator standing in for the device registry: the
		// gateway's job here is routing the key to it, verbatim.
		func(ctx context.Context, key string) (gateway.Identity, error) {
			if key != testDeviceKey {
				return gateway.Identity{}, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid device key.")
			}
			return gateway.Identity{Kind: gateway.KindDevice, ID: "dev_test", Name: "sensor"}, nil
		})
	s.accounts.OnIdentityChange = func(st auth.IdentityState) { s.gw.ApplyIdentityState(st.ID, st.Epoch, st.Active) }
	s.gw.Handle("test.subscribe", func(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
		s.gw.Hub().Subscribe(e.Channel, c)
		return c.SendJSON(map[string]string{"type": "ack", "id": e.ID})
	})
	s.gw.OnDisconnect(func(c *gateway.Client) { s.gw.Hub().Unsubscribe("t", c) })

	handler := api.NewServer(api.Deps{Accounts: s.accounts, Store: db, Mount: []func(*http.ServeMux, api.Helpers){s.gw.Mount}})
	s.srv = httptest.NewUnstartedServer(handler)
	s.srv.Listener = ws.WrapListener(s.srv.Listener)
	s.srv.StartTLS()
	s.wsURL = "wss" + strings.TrimPrefix(s.srv.URL, "https") + "/ws"
	t.Cleanup(func() {
		s.gw.Close()
		s.srv.Close()
		db.Close()
	})
	return s
}

// newUser registers a user and returns an access token.
func (s *stack) newUser(t testing.TB) (token string, user *unhidra.User) {
	t.Helper()
	s.mu.Lock()
	s.users++
	name := fmt.Sprintf("user%d", s.users)
	s.mu.Unlock()
	sess, err := s.accounts.Register(context.Background(), name, "correct horse battery", "", auth.Request{IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return sess.AccessToken, sess.User
}

type dialResult struct {
	conn     *websocket.Conn
	resp     *http.Response
	welcome  protocol.Welcome
	protocol string
}

// dial connects with the given subprotocols and reads the welcome frame.
func (s *stack) dial(t testing.TB, subprotocols []string, hdr http.Header) (*dialResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.wsURL, &websocket.DialOptions{
		HTTPClient: s.srv.Client(), Subprotocols: subprotocols, HTTPHeader: hdr,
	})
	if err != nil {
		return &dialResult{resp: resp}, err
	}
	c.SetReadLimit(1 << 20)
	r := &dialResult{conn: c, resp: resp, protocol: c.Subprotocol()}
	t.Cleanup(func() { c.CloseNow() })
	_, data, err := c.Read(ctx)
	if err != nil {
		return r, fmt.Errorf("read welcome: %w", err)
	}
	if err := json.Unmarshal(data, &r.welcome); err != nil || r.welcome.Type != protocol.TypeWelcome {
		return r, fmt.Errorf("first frame is not a welcome: %s", data)
	}
	return r, nil
}

func (s *stack) mustDial(t testing.TB, token string) *dialResult {
	t.Helper()
	r, err := s.dial(t, []string{protocol.Subprotocol, "bearer." + token}, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return r
}

// readFrame reads one JSON frame.
func readFrame(t testing.TB, c *websocket.Conn, timeout time.Duration) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("server sent non-JSON: %q", data)
	}
	return m, nil
}

func writeJSON(t testing.TB, c *websocket.Conn, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data, _ := json.Marshal(v)
	if err := c.Write(ctx, websocket.MessageText, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// closeCode reads until the connection closes and returns the close code.
func closeCode(t *testing.T, c *websocket.Conn, timeout time.Duration) websocket.StatusCode {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, _, err := c.Read(ctx)
		cancel()
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
	}
	t.Fatal("connection did not close in time")
	return 0
}

// rawUpgrade sends a handshake with net/http and returns the response (for
// refusals, which are ordinary HTTP responses).
func (s *stack) rawUpgrade(t *testing.T, path string, hdr http.Header) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.srv.URL+path, nil)
	key := make([]byte, 16)
	rand.Read(key)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	json.NewDecoder(res.Body).Decode(&body)
	return res, body
}

// rawConn is a TLS connection speaking WebSocket by hand, for peers that
// misbehave in ways a well-behaved library will not.
func (s *stack) rawConn(t *testing.T, subprotocol string) net.Conn {
	t.Helper()
	tr := s.srv.Client().Transport.(*http.Transport)
	conn, err := tlsDial(s.srv.Listener.Addr().String(), tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		s.srv.Listener.Addr(), base64.StdEncoding.EncodeToString(key), subprotocol)
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 101") {
		t.Fatalf("raw upgrade: %v %q", err, buf[:n])
	}
	return conn
}

// dialSmallBuffer connects with a 4 KiB socket receive buffer and returns
// the connection after reading the welcome.
func (s *stack) dialSmallBuffer(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	base := s.srv.Client().Transport.(*http.Transport)
	tr := base.Clone()
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return serr
		}}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := base.TLSClientConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(raw, cfg)
		return tc, tc.HandshakeContext(ctx)
	}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.wsURL, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr}, Subprotocols: []string{protocol.Subprotocol, "bearer." + token},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if _, err := readFrame(t, c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

package chat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/chat/chatws"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is the generous deadline for an expected frame: tests wait for
// events, they never sleep.
const wait = 15 * time.Second

// harness is a real SQLite store, hub, gateway and chat service behind an
// HTTP test server. The token of a connection is the user's ID.
type harness struct {
	t   testing.TB
	db  *sqldb.DB
	svc *chat.Service
	gw  *gateway.Gateway
	srv *httptest.Server
}

func newHarness(t testing.TB, cfg chat.Config) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, gateway.Config{})
}

// newHarnessWith also configures the gateway (e.g. a higher frame rate).
func newHarnessWith(t testing.TB, cfg chat.Config, gwCfg gateway.Config) *harness {
	t.Helper()
	return newHarnessStore(t, cfg, gwCfg, nil)
}

// newHarnessStore also lets the test put a wrapper around the store the
// service uses (nil: the store itself).
func newHarnessStore(t testing.TB, cfg chat.Config, gwCfg gateway.Config, wrap func(*sqldb.DB) chat.Store) *harness {
	t.Helper()
	return newHarnessBus(t, cfg, gwCfg, wrap, &local.Bus{})
}

// newHarnessWrapped is newHarnessBus with default configurations and the
// store wrapped by wrap (a test's hook on some reads), which it returns too.
func newHarnessWrapped[S chat.Store](t testing.TB, b bus.Bus, wrap func(*sqldb.DB) S) (*harness, S) {
	t.Helper()
	var st S
	h := newHarnessBus(t, chat.Config{}, gateway.Config{}, func(db *sqldb.DB) chat.Store { st = wrap(db); return st }, b)
	return h, st
}

// newHarnessBus also sets the bus the node's router uses.
func newHarnessBus(t testing.TB, cfg chat.Config, gwCfg gateway.Config, wrap func(*sqldb.DB) chat.Store, b bus.Bus) *harness {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	router := hub.NewRouter(hub.New(), b, nil)
	gw, err := gateway.New(gwCfg, router, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw.SetAuthenticators(func(ctx context.Context, token string) (gateway.Identity, error) {
		u, err := db.UserByID(ctx, token)
		if err != nil {
			return gateway.Identity{}, unhidra.Errorf(protocol.ErrUnauthorized, "bad token")
		}
		return gateway.Identity{Kind: gateway.KindPerson, ID: u.ID, Name: u.Name, Admin: u.IsAdmin()}, nil
	}, nil)
	var st chat.Store = db
	if wrap != nil {
		st = wrap(db)
	}
	svc := chat.New(st, router, cfg, nil)
	chatws.Register(gw, svc)
	mux := http.NewServeMux()
	pass := func(next http.Handler) http.Handler { return next }
	gw.Mount(mux, api.Helpers{Log: slog.New(slog.DiscardHandler), RequireUser: pass, RequireAdmin: pass,
		ClientIP: func(*http.Request) string { return "127.0.0.1" }})
	srv := httptest.NewServer(mux)
	hs := &harness{t: t, db: db, svc: svc, gw: gw, srv: srv}
	t.Cleanup(func() {
		gw.Close()
		srv.Close()
		svc.Close()
		db.Close()
	})
	return hs
}

func (h *harness) user(name string, role unhidra.Role) chat.Actor {
	h.t.Helper()
	u := &unhidra.User{Name: name, Role: role, PasswordHash: "x"}
	if err := h.db.CreateUser(context.Background(), u); err != nil {
		h.t.Fatal(err)
	}
	return chat.Actor{ID: u.ID, Name: u.Name, Admin: u.IsAdmin()}
}

type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }
func (f frame) num(k string) int64  { n, _ := f[k].(float64); return int64(n) }

// client is a real WebSocket client; a reader goroutine queues every frame.
type client struct {
	t      testing.TB
	conn   *websocket.Conn
	frames chan frame
	done   chan struct{}
}

func (h *harness) dial(t testing.TB, a chat.Actor) *client {
	t.Helper()
	c := h.dialRaw(t, a)
	c.expect("welcome", nil)
	// Connect sends the snapshot after subscribing the connection: from
	// here on it receives its conversations' messages.
	c.expect("presence_snapshot", nil)
	return c
}

// dialRaw is dial without waiting for the welcome and the snapshot.
func (h *harness) dialRaw(t testing.TB, a chat.Actor) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	url := "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/ws"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"unhidra.v1", "bearer." + a.ID}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(1 << 22)
	c := &client{t: t, conn: conn, frames: make(chan frame, 10000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f frame
			if err := json.Unmarshal(data, &f); err != nil {
				t.Errorf("bad frame %q: %v", data, err)
				return
			}
			c.frames <- f
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *client) close() {
	c.conn.Close(websocket.StatusNormalClosure, "")
	<-c.done
}

func (c *client) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// expect returns the next frame of type typ matching ok (nil: any),
// skipping other frames. An empty typ matches every frame.
func (c *client) expect(typ string, ok func(frame) bool) frame {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case f := <-c.frames:
			if (typ == "" || f.str("type") == typ) && (ok == nil || ok(f)) {
				return f
			}
		case <-deadline:
			c.t.Fatalf("no %q frame within %v", typ, wait)
		}
	}
}

// reply returns the ack or error answering request id.
func (c *client) reply(id string) frame {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case f := <-c.frames:
			if (f.str("type") == "ack" || f.str("type") == "error") && f.str("id") == id {
				return f
			}
		case <-deadline:
			c.t.Fatalf("no reply to %q within %v", id, wait)
		}
	}
}

// sendMsg sends a message frame and returns its ack (failing on an error).
func (c *client) sendMsg(id, channel, body string) frame {
	c.t.Helper()
	c.send(map[string]any{"type": "send", "id": id, "channel": channel, "body": body})
	r := c.reply(id)
	if r.str("type") != "ack" {
		c.t.Fatalf("send %s: %v", id, r)
	}
	return r
}

func wantError(t testing.TB, f frame, code string) {
	t.Helper()
	if f.str("type") != "error" || f.str("code") != code {
		t.Fatalf("got %v, want error %q", f, code)
	}
}

var idSeq sync.Mutex
var idNext int

func nextID() string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idNext++
	return fmt.Sprintf("r%d", idNext)
}

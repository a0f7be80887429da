package device

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/protocol"
	"github.com/unhidra/unhidra/protocol/schema"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is the service's clock in tests: time moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeConn records what the service sends to a device connection.
type fakeConn struct {
	mu     sync.Mutex
	frames []map[string]any
	closed int
}

func (c *fakeConn) SendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	c.mu.Lock()
	c.frames = append(c.frames, m)
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) Close(code int) { c.mu.Lock(); c.closed = code; c.mu.Unlock() }

func (c *fakeConn) Frames() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]map[string]any(nil), c.frames...)
}

func (c *fakeConn) ClosedWith() int { c.mu.Lock(); defer c.mu.Unlock(); return c.closed }

// notified is what owners would have received.
// Every frame is encoded as it would go on the wire and validated against
// its schema in protocol/schema; the fixture fails the test on a mismatch.
type notified struct {
	mu      sync.Mutex
	frames  []any
	invalid []string
}

func (n *notified) add(owner, device string, f any) {
	err := schema.Validate(protocol.Marshal(f))
	n.mu.Lock()
	n.frames = append(n.frames, f)
	if err != nil {
		n.invalid = append(n.invalid, err.Error())
	}
	n.mu.Unlock()
}

// checked is the number of frames validated; it fails t for each frame
// that did not match its schema.
func (n *notified) checked(t testing.TB) int {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.invalid {
		t.Error(e)
	}
	return len(n.frames)
}

// states returns the device_state frames' states, in order.
func (n *notified) states() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, f := range n.frames {
		if sf, ok := f.(StateFrame); ok {
			out = append(out, sf.State)
		}
	}
	return out
}

func (n *notified) statuses() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, f := range n.frames {
		if sf, ok := f.(StatusFrame); ok {
			out = append(out, sf.Command.Status)
		}
	}
	return out
}

type fixture struct {
	db    *sqldb.DB
	svc   *Service
	clock *fakeClock
	owner *unhidra.User
	dev   *unhidra.Device
	key   string
	note  *notified
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC)}
	db.Now = clk.Now
	owner := &unhidra.User{Name: "owner", Role: unhidra.RoleMember, PasswordHash: "x"}
	if err := db.CreateUser(ctx, owner); err != nil {
		t.Fatal(err)
	}
	svc := NewService(db, Config{Now: clk.Now}, nil)
	note := &notified{}
	svc.notify = note.add
	t.Cleanup(func() { note.checked(t) })
	d, key, err := svc.Registry().Register(ctx, owner, Registration{Name: "boiler", Type: "esp32"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, svc: svc, clock: clk, owner: owner, dev: d, key: key, note: note}
}

func (f *fixture) connect(t *testing.T) *fakeConn {
	t.Helper()
	c := &fakeConn{}
	f.svc.connected(context.Background(), c, f.dev.ID, f.owner.ID, f.dev.Name, "192.0.2.1")
	return c
}

func (f *fixture) flush(t *testing.T) {
	t.Helper()
	if err := f.svc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) sweep(t *testing.T) {
	t.Helper()
	if err := f.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) checkKeys(t *testing.T) {
	t.Helper()
	if err := f.svc.CheckKeyChanges(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// all returns every frame sent to owners.
func (n *notified) all() []any {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]any(nil), n.frames...)
}

// alerts returns the device_alert frames, in order.
func (n *notified) alerts() []AlertFrame {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []AlertFrame
	for _, f := range n.frames {
		if a, ok := f.(AlertFrame); ok {
			out = append(out, a)
		}
	}
	return out
}

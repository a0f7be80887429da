package device

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

func decode(t *testing.T, s string) (*protocol.Envelope, error) {
	t.Helper()
	return protocol.Decode([]byte(s))
}

func TestParseHeartbeat(t *testing.T) {
	const id = "dev_01abc"
	good := []struct {
		frame    string
		uptime   float64
		freeHeap int64
	}{
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":3600,"free_heap":123456}`, 3600, 123456},
		{`{"type":"heartbeat","device_id":"dev_01abc","timestamp":12.5,"free_heap":0}`, 12.5, 0},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":7,"timestamp":7,"free_heap":1e3}`, 7, 1000},
	}
	for _, g := range good {
		e, err := decode(t, g.frame)
		if err != nil {
			t.Fatal(err)
		}
		hb, err := parseHeartbeat(id, e)
		if err != nil || hb.Uptime != g.uptime || hb.FreeHeap != g.freeHeap {
			t.Errorf("%s: %+v, %v", g.frame, hb, err)
		}
	}
	bad := []struct {
		frame string
		code  string // store code; "wrong_device" for errWrongDevice
	}{
		{`{"type":"heartbeat","ts":1,"free_heap":1}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_other","ts":1,"free_heap":1}`, "wrong_device"},
		{`{"type":"heartbeat","device_id":"boiler","ts":1,"free_heap":1}`, "wrong_device"}, // names are not accepted
		{`{"type":"heartbeat","device_id":"dev_01abc","free_heap":1}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":-1,"free_heap":1}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1e300,"free_heap":1}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"timestamp":2,"free_heap":1}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"free_heap":-5}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"free_heap":1e30}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"free_heap":10.5}`, protocol.ErrInvalid},
		{`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"free_heap":1099511627777}`, protocol.ErrInvalid},
	}
	for _, b := range bad {
		e, err := decode(t, b.frame)
		if err != nil {
			t.Fatalf("%s: %v", b.frame, err)
		}
		_, err = parseHeartbeat(id, e)
		switch {
		case b.code == "wrong_device" && !errors.Is(err, errWrongDevice):
			t.Errorf("%s: err = %v, want wrong device", b.frame, err)
		case b.code != "wrong_device" && (unhidra.ErrorCode(err) != b.code || errors.Is(err, errWrongDevice)):
			t.Errorf("%s: err = %v, want %s", b.frame, err, b.code)
		}
	}
	// Values JSON cannot carry as numbers never reach parseHeartbeat: the
	// envelope decoder refuses them as bad frames.
	for _, frame := range []string{
		`{"type":"heartbeat","device_id":"dev_01abc","ts":"12","free_heap":1}`,
		`{"type":"heartbeat","device_id":"dev_01abc","ts":NaN,"free_heap":1}`,
		`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"free_heap":Infinity}`,
		`{"type":"heartbeat","device_id":"dev_01abc","ts":1,"free_heap":1e400}`,
		`{"type":"heartbeat","device_id":"dev_01abc","ts":null,"free_heap":[1]}`,
		`{"type":"heartbeat","device_id":7,"ts":1,"free_heap":1}`,
	} {
		if _, err := decode(t, frame); !errors.Is(err, protocol.ErrDecode) {
			t.Errorf("%s decoded: %v", frame, err)
		}
	}
}

func TestParseReadings(t *testing.T) {
	got, err := parseReadings(json.RawMessage(` {"temp": 21.5, "door":"<open>", "armed":true} `))
	if err != nil || string(got) != `{"armed":true,"door":"<open>","temp":21.5}` {
		t.Fatalf("parseReadings = %s, %v", got, err)
	}
	many := map[string]int{}
	for i := range MaxReadings + 1 {
		many[strings.Repeat("k", i+1)] = i
	}
	manyJSON, _ := json.Marshal(many)
	for _, bad := range []string{
		``, `[]`, `{}`, `"x"`, `{"a":{"nested":1}}`, `{"a":[1]}`, `{"a":null}`,
		`{"` + strings.Repeat("k", MaxReadingKeyLen+1) + `":1}`,
		`{"a":"` + strings.Repeat("s", MaxReadingStrLen+1) + `"}`,
		`{"a":1e400}`,
		`{"a":"` + strings.Repeat("s", MaxReadingsBytes) + `"}`,
		string(manyJSON),
	} {
		if _, err := parseReadings(json.RawMessage(bad)); err == nil {
			t.Errorf("accepted readings %.60q", bad)
		}
	}
}

func TestService_StateTransitions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if got := f.svc.State(f.dev.ID); got != StateOffline {
		t.Fatalf("before connecting: %s", got)
	}
	c := f.connect(t)
	if got := f.svc.State(f.dev.ID); got != StateOnline {
		t.Fatalf("after connecting: %s", got)
	}
	// Just inside 1.5 × 60 s: still online.
	f.clock.Add(90 * time.Second)
	f.sweep(t)
	if got := f.svc.State(f.dev.ID); got != StateOnline {
		t.Fatalf("at exactly the stale limit: %s", got)
	}
	f.clock.Add(time.Millisecond)
	f.sweep(t)
	if got := f.svc.State(f.dev.ID); got != StateStale {
		t.Fatalf("heartbeat overdue: %s", got)
	}
	f.sweep(t) // no second stale event
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 100, FreeHeap: 5000})
	if got := f.svc.State(f.dev.ID); got != StateOnline {
		t.Fatalf("after a heartbeat: %s", got)
	}
	f.clock.Add(60 * time.Second)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 160, FreeHeap: 4000})
	f.clock.Add(60 * time.Second)
	f.sweep(t)
	if got := f.svc.State(f.dev.ID); got != StateOnline {
		t.Fatalf("heartbeats on time: %s", got)
	}
	f.svc.disconnected(c, f.dev.ID)
	if got := f.svc.State(f.dev.ID); got != StateOffline {
		t.Fatalf("after disconnecting: %s", got)
	}
	if want := []string{StateOnline, StateStale, StateOnline, StateOffline}; !equal(f.note.states(), want) {
		t.Fatalf("state events = %v, want %v", f.note.states(), want)
	}
	f.flush(t)
	d, _ := f.db.DeviceByID(ctx, f.dev.ID)
	if v := f.svc.View(d); v.State != StateOffline || v.FreeHeap != 4000 || v.Uptime != 160 || !v.ConnectedSince.IsZero() ||
		!v.LastSeen.Equal(f.clock.Now()) || v.HeartbeatInterval != 60 {
		t.Fatalf("stored view after disconnect = %+v", v)
	}
	ev, _ := f.db.AuditEvents(ctx, store.AuditFilter{Target: f.dev.ID, Action: "device."})
	if len(ev) < 3 || ev[0].Action != unhidra.AuditDeviceDisconnected || ev[1].Action != unhidra.AuditDeviceConnected || ev[1].IP != "192.0.2.1" {
		t.Fatalf("trail = %+v", ev)
	}
}

func TestService_ReplacedConnection(t *testing.T) {
	f := newFixture(t)
	first := f.connect(t)
	second := f.connect(t)
	if first.ClosedWith() != protocol.CloseReplaced || second.ClosedWith() != 0 {
		t.Fatalf("closes: first %d, second %d", first.ClosedWith(), second.ClosedWith())
	}
	// The replaced connection's disconnect does not take the device offline.
	f.svc.disconnected(first, f.dev.ID)
	if got := f.svc.State(f.dev.ID); got != StateOnline {
		t.Fatalf("after the old connection went: %s", got)
	}
}

func TestService_RebootDetection(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.connect(t)
	for _, up := range []float64{100, 160, 220} {
		f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: up, FreeHeap: 1000})
		f.clock.Add(time.Minute)
	}
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 3, FreeHeap: 1000}) // uptime went backwards
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 63, FreeHeap: 1000})
	f.svc.disconnected(c, f.dev.ID)
	f.flush(t)
	d, _ := f.db.DeviceByID(ctx, f.dev.ID)
	if d.Reboots != 1 || d.Uptime != 63 {
		t.Fatalf("after one reboot: reboots=%d uptime=%v", d.Reboots, d.Uptime)
	}
	// A reboot that caused a reconnect: the new connection starts from
	// the stored uptime.
	f.clock.Add(time.Minute)
	f.connect(t)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 2, FreeHeap: 1000})
	f.flush(t)
	d, _ = f.db.DeviceByID(ctx, f.dev.ID)
	if d.Reboots != 2 {
		t.Fatalf("reboot across a reconnect not seen: reboots=%d", d.Reboots)
	}
	ev, _ := f.db.AuditEvents(ctx, store.AuditFilter{Target: f.dev.ID, Action: unhidra.AuditDeviceRebooted})
	if len(ev) != 2 || !strings.Contains(ev[1].Detail, `"previous_uptime":220`) {
		t.Fatalf("reboot events = %+v", ev)
	}
}

func TestService_HeapDownsampling(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.connect(t)
	// The fixture's clock starts at 10:00:30: two samples in minute 10:00,
	// one in 10:01, one in the next hour.
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 1, FreeHeap: 100})
	f.clock.Add(20 * time.Second)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 21, FreeHeap: 300})
	f.flush(t) // buckets merge across flushes
	f.clock.Add(20 * time.Second)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 41, FreeHeap: 200})
	f.clock.Add(time.Hour)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 3641, FreeHeap: 50})
	f.flush(t)
	minutes, err := f.db.HeapSeries(ctx, f.dev.ID, store.HeapMinute, time.Time{}, 0)
	if err != nil || len(minutes) != 3 {
		t.Fatalf("minute buckets = %+v, %v", minutes, err)
	}
	if b := minutes[0]; b.Min != 100 || b.Max != 300 || b.Sum/b.Count != 200 || b.Count != 2 || b.Start.Minute() != 0 {
		t.Fatalf("first minute = %+v", b)
	}
	hours, _ := f.db.HeapSeries(ctx, f.dev.ID, store.HeapHour, time.Time{}, 0)
	if len(hours) != 2 || hours[0].Count != 3 || hours[0].Min != 100 || hours[0].Max != 300 || hours[1].Min != 50 {
		t.Fatalf("hour buckets = %+v", hours)
	}
	// Retention: minute buckets older than 48 h go at the next sweep.
	f.clock.Add(49 * time.Hour)
	f.sweep(t)
	if m, _ := f.db.HeapSeries(ctx, f.dev.ID, store.HeapMinute, time.Time{}, 0); len(m) != 0 {
		t.Fatalf("minute buckets kept past retention: %d", len(m))
	}
	if h, _ := f.db.HeapSeries(ctx, f.dev.ID, store.HeapHour, time.Time{}, 0); len(h) != 2 {
		t.Fatalf("hour buckets pruned too early: %d", len(h))
	}
}

func TestService_Telemetry(t *testing.T) {
	f := newFixture(t)
	f.svc.cfg.KeepTelemetry = 5
	f.svc.cfg.MaxPendingTelemetry = 8
	f.connect(t)
	accepted := 0
	for i := range 10 {
		if f.svc.telemetry(f.dev.ID, json.RawMessage(`{"i":`+string(rune('0'+i))+`}`)) {
			accepted++
		}
	}
	if accepted != 8 || f.svc.Stats().DroppedTelemetry != 2 {
		t.Fatalf("accepted %d, dropped %d; want 8 and 2", accepted, f.svc.Stats().DroppedTelemetry)
	}
	f.flush(t)
	tel, _ := f.db.RecentTelemetry(context.Background(), f.dev.ID, 0)
	if len(tel) != 5 || string(tel[0].Readings) != `{"i":7}` {
		t.Fatalf("stored telemetry = %v", tel)
	}
}

func TestService_CommandQueueDeliveryAckExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	owner := ActorOf(f.owner)
	// Offline: queued.
	c1, err := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "relay.set", Params: json.RawMessage(`{"on": true}`)})
	if err != nil || c1.Status != unhidra.CommandQueued || string(c1.Params) != `{"on":true}` {
		t.Fatalf("queued command = %+v, %v", c1, err)
	}
	c2, _ := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "upgrade", Type: "ota", TTLSeconds: 30})
	// Someone else cannot see or command the device.
	if _, err := f.svc.SendCommand(ctx, Actor{ID: "usr_other"}, f.dev.ID, CommandRequest{Command: "x"}); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("stranger's command: %v", err)
	}
	// On connect, unexpired commands are delivered oldest first with the
	// frame type the firmware listens for.
	conn := f.connect(t)
	frames := conn.Frames()
	if len(frames) != 2 || frames[0]["type"] != "command" || frames[0]["id"] != c1.ID || frames[0]["command"] != "relay.set" ||
		frames[1]["type"] != "ota" || frames[1]["id"] != c2.ID {
		t.Fatalf("delivered frames = %v", frames)
	}
	if got, _ := f.db.CommandByID(ctx, f.dev.ID, c1.ID); got.Status != unhidra.CommandDelivered {
		t.Fatalf("after delivery: %s", got.Status)
	}
	// Acks: ok → acked with result; ok:false → failed.
	ok := true
	if err := f.svc.ReceiveAck(ctx, f.dev.ID, &protocol.Envelope{Type: "ack", ID: c1.ID, OK: &ok, Result: json.RawMessage(`{ "relay": 1 }`)}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ReceiveAck(ctx, f.dev.ID, &protocol.Envelope{Type: "ack", ID: c1.ID}); unhidra.ErrorCode(err) != protocol.ErrConflict {
		t.Fatalf("second ack: %v", err)
	}
	if err := f.svc.ReceiveAck(ctx, "dev_other", &protocol.Envelope{Type: "ack", ID: c2.ID}); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("another device acking: %v", err)
	}
	if err := f.svc.ReceiveAck(ctx, f.dev.ID, &protocol.Envelope{Type: "ack", ID: c2.ID, Error: "flash busy"}); err != nil {
		t.Fatal(err)
	}
	got1, _ := f.db.CommandByID(ctx, f.dev.ID, c1.ID)
	got2, _ := f.db.CommandByID(ctx, f.dev.ID, c2.ID)
	if got1.Status != unhidra.CommandAcked || string(got1.Result) != `{"relay":1}` || got2.Status != unhidra.CommandFailed || got2.Error != "flash busy" {
		t.Fatalf("after acks: %+v / %+v", got1, got2)
	}
	// Connected: delivered at once. Unanswered past its TTL: expired.
	c3, _ := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "reboot", Type: "config", TTLSeconds: 60})
	if c3.Status != unhidra.CommandDelivered || len(conn.Frames()) != 3 || conn.Frames()[2]["type"] != "config" {
		t.Fatalf("live delivery: %+v, frames %v", c3, conn.Frames())
	}
	if ttl := c3.ExpiresAt.Sub(c3.CreatedAt); ttl != time.Minute {
		t.Fatalf("ttl = %v", ttl)
	}
	f.clock.Add(c3.ExpiresAt.Sub(f.clock.Now()) - time.Millisecond)
	f.sweep(t)
	if got, _ := f.db.CommandByID(ctx, f.dev.ID, c3.ID); got.Status != unhidra.CommandDelivered {
		t.Fatalf("expired early: %s", got.Status)
	}
	f.clock.Add(time.Millisecond)
	f.sweep(t)
	if got, _ := f.db.CommandByID(ctx, f.dev.ID, c3.ID); got.Status != unhidra.CommandExpired {
		t.Fatalf("not expired: %s", got.Status)
	}
	want := []string{"queued", "queued", "delivered", "delivered", "acked", "failed", "delivered", "expired"}
	if !equal(f.note.statuses(), want) {
		t.Fatalf("owner's status frames = %v, want %v", f.note.statuses(), want)
	}
}

func TestService_CommandLimits(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.svc.cfg.MaxQueuedCommands = 2
	owner := ActorOf(f.owner)
	for range 2 {
		if _, err := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "x"}); unhidra.ErrorCode(err) != protocol.ErrRateLimited {
		t.Fatalf("third queued command: %v", err)
	}
	// A huge TTL is clamped to the maximum, not overflowed into the past.
	f.svc.cfg.MaxQueuedCommands = 3
	big, err := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "x", TTLSeconds: 1 << 62})
	if err != nil || big.ExpiresAt.Sub(big.CreatedAt) != 7*24*time.Hour {
		t.Fatalf("huge ttl: %+v, %v", big, err)
	}
	// A queued command past its expiry is not delivered on reconnect.
	f.clock.Add(2 * time.Hour)
	if conn := f.connect(t); len(conn.Frames()) != 1 || conn.Frames()[0]["id"] != big.ID {
		t.Fatalf("want only the unexpired command delivered: %v", conn.Frames())
	}
	for _, r := range []CommandRequest{
		{Command: ""}, {Command: "has space"}, {Command: strings.Repeat("c", MaxCommandLen+1)},
		{Command: "x", Type: "shell"}, {Command: "x", TTLSeconds: -1},
		{Command: "x", Params: json.RawMessage(`{"a":"` + strings.Repeat("p", MaxParamsBytes) + `"}`)},
		{Command: "x", Params: json.RawMessage(`{bad`)},
	} {
		if err := r.Valid(ctx); err == nil {
			t.Errorf("accepted %+v", r)
		}
	}
	if _, err := f.svc.Registry().Revoke(ctx, f.owner, f.dev.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "x"}); unhidra.ErrorCode(err) != protocol.ErrConflict {
		t.Fatalf("command to a revoked device: %v", err)
	}
}

// Keys revoked or rotated by another process (the admin CLI) close live
// connections at the next key check; the sweep does not do it.
func TestService_KeyCheckSeesOutsideKeyChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	conn := f.connect(t)
	f.clock.Add(time.Second)
	outside := &Registry{Store: f.db}
	if _, _, err := outside.RotateKey(ctx, nil, f.dev.ID); err != nil {
		t.Fatal(err)
	}
	f.sweep(t)
	if conn.ClosedWith() != 0 {
		t.Fatalf("the sweep closed the connection (%d): key changes are the key check's", conn.ClosedWith())
	}
	f.checkKeys(t)
	if conn.ClosedWith() != protocol.CloseBadCredentials {
		t.Fatalf("after an outside rotation: closed with %d", conn.ClosedWith())
	}
	f.svc.disconnected(conn, f.dev.ID)
	f.clock.Add(time.Second)
	conn = f.connect(t)
	f.clock.Add(time.Second)
	f.checkKeys(t)
	if conn.ClosedWith() != 0 {
		t.Fatalf("connection with the current key closed: %d", conn.ClosedWith())
	}
	if _, err := outside.Revoke(ctx, nil, f.dev.ID); err != nil {
		t.Fatal(err)
	}
	f.checkKeys(t)
	if conn.ClosedWith() != protocol.CloseRevoked {
		t.Fatalf("after an outside revoke: closed with %d", conn.ClosedWith())
	}
}

// Run flushes what is pending when its context ends, so a shutdown loses
// no heartbeat that was accepted.
func TestService_RunFlushesOnStop(t *testing.T) {
	f := newFixture(t)
	f.svc.cfg.FlushInterval, f.svc.cfg.SweepInterval = time.Hour, time.Hour
	c := f.connect(t)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 9, FreeHeap: 777})
	f.svc.disconnected(c, f.dev.ID)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.svc.Run(ctx) }()
	cancel()
	<-done
	d, _ := f.db.DeviceByID(context.Background(), f.dev.ID)
	if d.FreeHeap != 777 || d.Uptime != 9 {
		t.Fatalf("not flushed on stop: %+v", d)
	}
}

// failingStore fails batch writes while fail is set.
type failingStore struct {
	Store
	fail bool
}

func (f *failingStore) WriteDeviceBatch(ctx context.Context, b *store.DeviceBatch) error {
	if f.fail {
		return errors.New("disk on fire")
	}
	return f.Store.WriteDeviceBatch(ctx, b)
}

// A batch that cannot be written is kept for the next flush.
func TestService_FlushRetriesFailedBatch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	fs := &failingStore{Store: f.db, fail: true}
	f.svc.store = fs
	f.connect(t)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 10, FreeHeap: 100})
	if err := f.svc.Flush(ctx); err == nil {
		t.Fatal("flush reported success")
	}
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 5, FreeHeap: 300}) // a reboot, after the failure
	fs.fail = false
	f.flush(t)
	d, _ := f.db.DeviceByID(ctx, f.dev.ID)
	if d.FreeHeap != 300 || d.Reboots != 1 || f.svc.Stats().FlushFailures != 1 {
		t.Fatalf("after the retry: %+v, stats %+v", d, f.svc.Stats())
	}
	heap, _ := f.db.HeapSeries(ctx, f.dev.ID, store.HeapMinute, time.Time{}, 0)
	if len(heap) != 1 || heap[0].Count != 2 || heap[0].Min != 100 || heap[0].Max != 300 {
		t.Fatalf("heap after the retry: %+v", heap)
	}
	ev, _ := f.db.AuditEvents(ctx, store.AuditFilter{Target: f.dev.ID, Action: "device."})
	var actions []string
	for _, e := range ev {
		actions = append(actions, e.Action)
	}
	if !equal(actions, []string{unhidra.AuditDeviceRebooted, unhidra.AuditDeviceConnected, unhidra.AuditDeviceRegistered}) {
		t.Fatalf("trail after the retry = %v", actions)
	}
}

func TestService_Metrics(t *testing.T) {
	f := newFixture(t)
	f.connect(t)
	f.clock.Add(2 * time.Minute)
	f.sweep(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.svc.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["unhidra_devices_connected/stale"] != 1 || got["unhidra_devices_connected/online"] != 0 {
		t.Fatalf("metrics = %v", got)
	}
}

// TestService_FastRebootAcrossReconnect: ts 1000, then half a second
// later on a new connection ts 1, with nothing flushed in between: the
// reboot is seen. So is a reboot after a long absence whose new uptime is
// larger than the old one (the implied boot is after the last heartbeat).
func TestService_FastRebootAcrossReconnect(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.connect(t)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 1000, FreeHeap: 5000})
	f.svc.disconnected(c, f.dev.ID)
	f.clock.Add(500 * time.Millisecond)
	c = f.connect(t) // no flush: the store knows no heartbeat yet
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 1, FreeHeap: 5000})
	if v := f.svc.View(f.dev); v.Reboots != 1 {
		t.Fatalf("fast reboot missed: reboots=%d", v.Reboots)
	}
	// Up for a minute, then away for two hours; back with an uptime of an
	// hour: it booted while away.
	f.clock.Add(time.Minute)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 61, FreeHeap: 5000})
	f.svc.disconnected(c, f.dev.ID)
	f.clock.Add(2 * time.Hour)
	c = f.connect(t)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 3600, FreeHeap: 5000})
	// Heartbeats that arrive late (network delay) are no reboot.
	f.clock.Add(60*time.Second + 20*time.Second)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 3660, FreeHeap: 5000})
	f.clock.Add(40 * time.Second)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 3720, FreeHeap: 5000})
	f.svc.disconnected(c, f.dev.ID)
	f.flush(t)
	d, _ := f.db.DeviceByID(ctx, f.dev.ID)
	if d.Reboots != 2 {
		t.Fatalf("reboots = %d, want 2", d.Reboots)
	}
	ev, _ := f.db.AuditEvents(ctx, store.AuditFilter{Target: f.dev.ID, Action: unhidra.AuditDeviceRebooted})
	if len(ev) != 2 {
		t.Fatalf("reboot events = %+v", ev)
	}
}

// TestService_HeapTimedByDeviceUptime: heap samples are placed by the
// device's uptime (boot time + ts), not by when they arrived: a heartbeat
// delayed by 40 s still lands in the minute it was taken.
func TestService_HeapTimedByDeviceUptime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.connect(t)
	start := f.clock.Now() // 10:00:30
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 100, FreeHeap: 1000})
	f.clock.Add(60*time.Second + 40*time.Second) // taken at 10:01:30, arrives 10:02:10
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 160, FreeHeap: 900})
	f.clock.Add(20 * time.Second) // taken at 10:02:30, on time
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 220, FreeHeap: 800})
	f.flush(t)
	pts, err := f.db.HeapSeries(ctx, f.dev.ID, store.HeapMinute, start.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 3 {
		t.Fatalf("buckets = %+v", pts)
	}
	for i, want := range []int64{1000, 900, 800} {
		if pts[i].Sum != want || !pts[i].Start.Equal(start.Truncate(time.Minute).Add(time.Duration(i)*time.Minute)) {
			t.Errorf("bucket %d = %+v, want %d at minute %d", i, pts[i], want, i)
		}
	}
}

// TestService_CommandWindow: at most CommandWindow commands await an
// answer; each answer or expiry lets the next one go, and every answer
// ends its command (an oversized result fails it; a long error is cut).
func TestService_CommandWindow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	owner := ActorOf(f.owner)
	var ids []string
	for i := range 10 {
		ttl := 3600
		if i == 1 {
			ttl = 60
		}
		c, err := f.svc.SendCommand(ctx, owner, f.dev.ID, CommandRequest{Command: "step", TTLSeconds: ttl})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	conn := f.connect(t)
	if n := len(conn.Frames()); n != 8 {
		t.Fatalf("%d commands sent on connect, want the window of 8", n)
	}
	// An answer lets the 9th go; a huge result fails the command.
	ok := true
	if err := f.svc.ReceiveAck(ctx, f.dev.ID, &protocol.Envelope{Type: "ack", ID: ids[0], OK: &ok,
		Result: json.RawMessage(`"` + strings.Repeat("x", MaxResultBytes) + `"`)}); err != nil {
		t.Fatal(err)
	}
	if fr := conn.Frames(); len(fr) != 9 || fr[8]["id"] != ids[8] {
		t.Fatalf("after one answer: %d frames", len(fr))
	}
	got, _ := f.db.CommandByID(ctx, f.dev.ID, ids[0])
	if got.Status != unhidra.CommandFailed || !strings.Contains(got.Error, "result too large") {
		t.Fatalf("oversized result: %+v", got)
	}
	// A long error is cut, not refused.
	if err := f.svc.ReceiveAck(ctx, f.dev.ID, &protocol.Envelope{Type: "ack", ID: ids[2], Error: strings.Repeat("é", 1000)}); err != nil {
		t.Fatal(err)
	}
	got, _ = f.db.CommandByID(ctx, f.dev.ID, ids[2])
	if got.Status != unhidra.CommandFailed || len(got.Error) > MaxAckErrorLen || !utf8.ValidString(got.Error) {
		t.Fatalf("long error: %d bytes", len(got.Error))
	}
	if fr := conn.Frames(); len(fr) != 10 || fr[9]["id"] != ids[9] {
		t.Fatalf("after two answers: %d frames", len(fr))
	}
	// An expiry frees a slot too (nothing is left to send, though).
	f.clock.Add(61 * time.Second)
	f.sweep(t)
	if got, _ := f.db.CommandByID(ctx, f.dev.ID, ids[1]); got.Status != unhidra.CommandExpired {
		t.Fatalf("short-lived command: %s", got.Status)
	}
	if f.svc.Expecting(f.dev.ID, conn, ids[1]) || !f.svc.Expecting(f.dev.ID, conn, ids[3]) {
		t.Fatal("window bookkeeping after an expiry")
	}
	// A new connection re-sends what was delivered and not answered,
	// oldest first.
	f.svc.disconnected(conn, f.dev.ID)
	conn = f.connect(t)
	var again []string
	for _, fr := range conn.Frames() {
		again = append(again, fr["id"].(string))
	}
	want := []string{ids[3], ids[4], ids[5], ids[6], ids[7], ids[8], ids[9]}
	if strings.Join(again, ",") != strings.Join(want, ",") {
		t.Fatalf("re-sent %v, want %v", again, want)
	}
}

// countingStore is the real store, counting the device-record reads.
type countingStore struct {
	Store
	deviceByID atomic.Int64
}

func (c *countingStore) DeviceByID(ctx context.Context, id string) (*unhidra.Device, error) {
	c.deviceByID.Add(1)
	return c.Store.DeviceByID(ctx, id)
}

// After a restart, a device's stored health comes back through the key
// check of its handshake: Connect does not read the record again, and a
// reboot while the server was away is still seen.
func TestService_RestoreThroughAuthenticate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.connect(t)
	f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 500, FreeHeap: 4242})
	f.svc.disconnected(c, f.dev.ID)
	f.flush(t)

	cs := &countingStore{Store: f.db}
	svc := NewService(cs, Config{Now: f.clock.Now}, nil) // the restarted server
	svc.notify = f.note.add
	if _, err := svc.Authenticate(ctx, "unhidra_dk_bad"); unhidra.ErrorCode(err) != protocol.ErrUnauthorized {
		t.Fatalf("bad key: %v", err)
	}
	d, err := svc.Authenticate(ctx, f.key)
	if err != nil || d.ID != f.dev.ID {
		t.Fatalf("authenticate: %v %v", d, err)
	}
	f.clock.Add(time.Minute)
	svc.connected(ctx, &fakeConn{}, f.dev.ID, f.owner.ID, f.dev.Name, "192.0.2.1")
	if n := cs.deviceByID.Load(); n != 0 {
		t.Errorf("connect read the device record %d times after Authenticate", n)
	}
	if v := svc.View(d); v.FreeHeap != 4242 || v.Uptime != 500 || v.State != StateOnline {
		t.Errorf("restored view %+v", v)
	}
	svc.heartbeat(f.dev.ID, Heartbeat{Uptime: 5, FreeHeap: 4000}) // rebooted meanwhile
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.db.DeviceByID(ctx, f.dev.ID); got.Reboots != 1 {
		t.Errorf("reboots = %d after a reboot across the restart", got.Reboots)
	}
	// Without a handshake through Authenticate (another path), Connect
	// reads the record itself.
	svc2 := NewService(cs, Config{Now: f.clock.Now}, nil)
	svc2.notify = f.note.add
	svc2.connected(ctx, &fakeConn{}, f.dev.ID, f.owner.ID, f.dev.Name, "192.0.2.1")
	if n := cs.deviceByID.Load(); n != 1 {
		t.Errorf("connect without Authenticate read the record %d times, want 1", n)
	}
	if v := svc2.View(d); v.FreeHeap != 4000 {
		t.Errorf("restored free heap %d, want 4000", v.FreeHeap)
	}
}

// The follower cache forgets entries past their TTL at each sweep, so it
// does not keep one entry per device that ever connected.
func TestFollowerCache_Prune(t *testing.T) {
	now := time.Now()
	c := followerCache{entries: map[string]followerEntry{
		"dev_old":   {channels: []string{"c1"}, loaded: now.Add(-followersTTL - time.Second)},
		"dev_fresh": {channels: nil, loaded: now.Add(-time.Second)},
	}}
	c.prune(now)
	if _, ok := c.entries["dev_old"]; ok || len(c.entries) != 1 {
		t.Errorf("after prune: %v", c.entries)
	}
	var empty followerCache
	empty.prune(now) // a nil map is fine
}

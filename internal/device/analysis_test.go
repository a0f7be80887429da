package device

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/mlbridge"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// startML runs one built-in Python worker for the test.
func startML(t *testing.T) *mlbridge.Supervisor {
	t.Helper()
	sup, err := mlbridge.New(mlbridge.Config{Workers: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sup.Start(ctx); err != nil {
		t.Fatalf("ML workers: %v", err)
	}
	t.Cleanup(func() { sup.Close(context.Background()) })
	return sup
}

func TestAnalysis_WithoutML(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.Analyze(context.Background(), f.dev); unhidra.ErrorCode(err) != protocol.ErrUnavailable {
		t.Fatalf("Analyze without ML = %v, want protocol.ErrUnavailable", err)
	}
	f.svc.CheckLeaks(context.Background()) // a no-op, not a crash
}

func TestAnalysis_LeakAlertAndAnomalies(t *testing.T) {
	f := newFixture(t)
	ml := startML(t)
	f.svc.SetInferrer(ml)
	ctx := context.Background()
	conn := f.connect(t)
	// Two hours of heartbeats, free heap falling 1,000 bytes a minute from
	// 200,000, with a telemetry temperature that spikes once.
	for m := range 120 {
		f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: float64(60 * (m + 1)), FreeHeap: int64(200_000 - 1000*m)})
		temp := 21.0 + 0.1*math.Sin(float64(m))
		if m == 90 {
			temp = 85
		}
		readings, _ := json.Marshal(map[string]any{"temp_c": temp})
		f.svc.telemetry(f.dev.ID, readings)
		f.clock.Add(time.Minute)
	}
	f.flush(t)

	a, err := f.svc.Analyze(ctx, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	var trend struct {
		Leak              bool     `json:"leak"`
		Slope             float64  `json:"slope_bytes_per_hour"`
		HoursToExhaustion *float64 `json:"hours_to_exhaustion"`
	}
	if err := json.Unmarshal(a.Heap, &trend); err != nil || !trend.Leak || a.HeapPoints < 100 {
		t.Fatalf("heap analysis %s (points %d, error %q): want a leak", a.Heap, a.HeapPoints, a.HeapError)
	}
	if trend.Slope > -59_000 || trend.Slope < -61_000 {
		t.Fatalf("slope %v bytes/h, want about -60,000", trend.Slope)
	}
	// 81,000 bytes left at 60,000 bytes/h.
	if trend.HoursToExhaustion == nil || *trend.HoursToExhaustion < 1 || *trend.HoursToExhaustion > 2 {
		t.Fatalf("hours to exhaustion %v, want about 1.35", trend.HoursToExhaustion)
	}
	var anomalies struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(a.Telemetry, &anomalies); err != nil || anomalies.Count < 1 {
		t.Fatalf("telemetry analysis %s: want the spike flagged", a.Telemetry)
	}

	// The periodic check alerts the owner once, and records it.
	f.svc.CheckLeaks(ctx)
	f.svc.CheckLeaks(ctx)
	alerts := 0
	for _, fr := range f.note.all() {
		if al, ok := fr.(AlertFrame); ok && al.Kind == "memory_leak" && al.Device == f.dev.ID {
			alerts++
		}
	}
	if alerts != 1 {
		t.Fatalf("%d leak alerts, want exactly 1", alerts)
	}
	ev, _ := f.db.AuditEvents(ctx, store.AuditFilter{Action: AuditDeviceAlert, Target: f.dev.ID})
	if len(ev) != 1 {
		t.Fatalf("%d alert audit events", len(ev))
	}
	raised := f.note.alerts()
	if len(raised) != 1 || raised[0].State != AlertRaised || raised[0].Confidence < 99 || raised[0].Confidence > 99.9 ||
		!strings.Contains(raised[0].Reason, "fell steadily") {
		t.Fatalf("raised alert = %+v", raised)
	}

	// The device moves to another node (or this one restarts): the alert
	// still stands there, so it is not raised again.
	f.svc.disconnected(conn, f.dev.ID)
	other := NewService(f.db, Config{Now: f.clock.Now}, nil)
	otherNote := &notified{}
	other.notify = otherNote.add
	other.SetInferrer(ml)
	other.connected(ctx, &fakeConn{}, f.dev.ID, f.owner.ID, f.dev.Name, "192.0.2.2")
	other.CheckLeaks(ctx)
	if got := otherNote.alerts(); len(got) != 0 {
		t.Fatalf("the other node alerted again: %+v", got)
	}

	// The leak stops (say, a fix was deployed without a reboot): two flat
	// hours later the other node clears the alert, once.
	for m := range 120 {
		other.heartbeat(f.dev.ID, Heartbeat{Uptime: float64(60 * (121 + m)), FreeHeap: int64(81_000 + 200*((m*7)%5))})
		f.clock.Add(time.Minute)
	}
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	other.CheckLeaks(ctx)
	other.CheckLeaks(ctx)
	all := otherNote.alerts()
	if len(all) != 1 || all[0].State != AlertCleared || all[0].HoursToExhaustion != nil || all[0].Reason == "" {
		t.Fatalf("alerts after the trend ended = %+v", all)
	}
	if got := f.note.alerts(); len(got) != 1 {
		t.Fatalf("the first node alerted %d times, want once: %+v", len(got), got)
	}
}

func TestAnalysis_FlatHeapIsNoLeak(t *testing.T) {
	f := newFixture(t)
	f.svc.SetInferrer(startML(t))
	f.connect(t)
	for m := range 60 {
		f.svc.heartbeat(f.dev.ID, Heartbeat{Uptime: float64(60 * (m + 1)), FreeHeap: int64(150_000 + 500*((m*7)%5))})
		f.clock.Add(time.Minute)
	}
	f.flush(t)
	f.svc.CheckLeaks(context.Background())
	for _, fr := range f.note.all() {
		if _, ok := fr.(AlertFrame); ok {
			t.Fatal("alert for a device whose heap only wobbles")
		}
	}
}

// alertReads counts the reads of a device's last leak alert.
type alertReads struct {
	Store
	n atomic.Int64
}

func (a *alertReads) AuditEvents(ctx context.Context, f store.AuditFilter) ([]*unhidra.AuditEvent, error) {
	if f.Action == AuditDeviceAlert {
		a.n.Add(1)
	}
	return a.Store.AuditEvents(ctx, f)
}

// TestCheckLeaks_TooLittleEvidenceReadsNoAlert: with too short a series
// nothing can be raised (no leak) or cleared (too little evidence), so the
// periodic check does not read the device's last alert.
func TestCheckLeaks_TooLittleEvidenceReadsNoAlert(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reads := &alertReads{Store: f.db}
	svc := NewService(reads, Config{Now: f.clock.Now}, nil)
	note := &notified{}
	svc.notify = note.add
	svc.SetInferrer(startML(t))
	svc.connected(ctx, &fakeConn{}, f.dev.ID, f.owner.ID, f.dev.Name, "192.0.2.1")
	for m := range 3 {
		svc.heartbeat(f.dev.ID, Heartbeat{Uptime: float64(60 * (m + 1)), FreeHeap: 200_000})
		f.clock.Add(time.Minute)
	}
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Analyze(ctx, f.dev)
	var trend struct {
		Evidence string `json:"evidence"`
	}
	if err != nil || json.Unmarshal(a.Heap, &trend) != nil || trend.Evidence != "insufficient" {
		t.Fatalf("heap analysis %s, %v: want too little evidence", a.Heap, err)
	}
	svc.CheckLeaks(ctx)
	if n := reads.n.Load(); n != 0 {
		t.Fatalf("the check read the last alert %d times; nothing could change", n)
	}
	if got := note.alerts(); len(got) != 0 {
		t.Fatalf("alerts %+v", got)
	}
}

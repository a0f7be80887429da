package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/mlbridge"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Inferrer runs a model of the ML workers (*mlbridge.Supervisor).
type Inferrer interface {
	Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error)
}

// Analysis is the ML view of a device's health: the free-heap trend
// (leak suspected, time to exhaustion) and anomalous telemetry readings.
type Analysis struct {
	Device     string          `json:"device"`
	At         time.Time       `json:"at"`
	HeapPoints int             `json:"heap_points"`
	Heap       json.RawMessage `json:"heap"`                 // the heap-trend result, or null
	HeapError  string          `json:"heap_error,omitempty"` // why there is none (too few points…)
	Telemetry  json.RawMessage `json:"telemetry"`            // the telemetry-anomaly result, or null
}

// AlertFrame tells an owner (and the channels following the device) that
// a device's memory is running out, or, with State "cleared", that the
// trend ended. One alert is raised per trend: no repeat while it lasts.
type AlertFrame struct {
	Type              string    `json:"type"` // "device_alert"
	Device            string    `json:"device"`
	Name              string    `json:"name"`
	Kind              string    `json:"kind"`  // "memory_leak"
	State             string    `json:"state"` // "raised" or "cleared"
	SlopeBytesPerHour float64   `json:"slope_bytes_per_hour"`
	HoursToExhaustion *float64  `json:"hours_to_exhaustion,omitempty"`
	Confidence        float64   `json:"confidence"` // percent
	Reason            string    `json:"reason"`     // in plain words
	At                time.Time `json:"at"`
}

// Alert states.
const (
	AlertRaised  = "raised"
	AlertCleared = "cleared"
)

// analysisState is the service's ML state. Whether a device's leak alert
// stands is not kept here but read from its last alert in the audit log:
// the node that raised it may have restarted, or the device moved to
// another node, and the alert must neither repeat nor be left standing.
type analysisState struct {
	ml      Inferrer
	perUser *ratelimit.Keyed
}

// SetInferrer enables analysis and leak alerts. Call before Run.
func (s *Service) SetInferrer(ml Inferrer) {
	s.analysis = &analysisState{ml: ml,
		perUser: ratelimit.NewKeyed(ratelimit.Limit{Burst: 10, Every: time.Second}, 0)}
}

// Analyze runs the heap-trend model on the device's last two days of
// free-heap buckets (minute averages, reboots from its audit trail) and the
// telemetry-anomaly model on its recent numeric readings.
func (s *Service) Analyze(ctx context.Context, d *unhidra.Device) (*Analysis, error) {
	if s.analysis == nil {
		return nil, unhidra.Errorf(protocol.ErrUnavailable, "Device analysis needs the ML workers, which are not running.")
	}
	now := s.cfg.Now()
	a := &Analysis{Device: d.ID, At: now.UTC()}
	since := now.Add(-48 * time.Hour)
	buckets, err := s.store.HeapSeries(ctx, d.ID, store.HeapMinute, since, 3000)
	if err != nil {
		return nil, err
	}
	series := make([][2]float64, 0, len(buckets))
	for _, b := range buckets {
		series = append(series, [2]float64{float64(b.Start.Unix()), float64(b.Sum) / float64(max(b.Count, 1))})
	}
	a.HeapPoints = len(series)
	reboots := []int64{}
	if ev, err := s.store.AuditEvents(ctx, store.AuditFilter{Target: d.ID, Action: unhidra.AuditDeviceRebooted, Since: since, Limit: 1000}); err == nil {
		for _, e := range ev {
			reboots = append(reboots, e.At.Unix())
		}
	}
	if len(series) < 3 {
		a.HeapError = "Not enough free-heap data yet (a few minutes of heartbeats are needed)."
	} else {
		in, _ := json.Marshal(map[string]any{"series": series, "reboots": reboots})
		if a.Heap, err = s.analysis.ml.Infer(ctx, "heap-trend", in); err != nil {
			a.Heap, a.HeapError = nil, modelProblem(err)
		}
	}
	if metrics := numericTelemetry(ctx, s, d.ID); len(metrics) > 0 {
		in, _ := json.Marshal(map[string]any{"metrics": metrics, "window": 5})
		a.Telemetry, _ = s.analysis.ml.Infer(ctx, "telemetry-anomaly", in)
	}
	return a, nil
}

// modelProblem turns a model's complaint into a message for the owner;
// other failures (workers down, timeouts) are not detailed.
func modelProblem(err error) string {
	var me *mlbridge.ModelError
	if errors.As(err, &me) {
		return "The trend could not be computed: " + me.Message
	}
	return "The trend could not be computed (the ML workers did not answer)."
}

// numericTelemetry collects the numeric readings of the recent telemetry,
// per reading name, oldest first.
func numericTelemetry(ctx context.Context, s *Service, deviceID string) map[string][][2]float64 {
	tel, err := s.store.RecentTelemetry(ctx, deviceID, 1000)
	if err != nil {
		return nil
	}
	sort.Slice(tel, func(i, j int) bool { return tel[i].At.Before(tel[j].At) })
	out := map[string][][2]float64{}
	for _, t := range tel {
		var readings map[string]any
		if json.Unmarshal(t.Readings, &readings) != nil {
			continue
		}
		for k, v := range readings {
			if f, ok := v.(float64); ok {
				out[k] = append(out[k], [2]float64{float64(t.At.UnixMilli()) / 1000, f})
			}
		}
	}
	for k, pts := range out {
		if len(pts) < 5 {
			delete(out, k) // too few to say anything
		}
	}
	return out
}

// CheckLeaks analyses every connected device's heap and alerts its owner
// and the channels following it (a device_alert frame and a device.alert
// audit event) when a leak is found that would exhaust memory within
// AlertHorizon: once per trend, and again (state "cleared") when a later
// analysis with enough evidence finds no such leak. Run calls it every
// AnalyzeInterval.
func (s *Service) CheckLeaks(ctx context.Context) {
	if s.analysis == nil {
		return
	}
	s.mu.Lock()
	type target struct{ id, owner, name string }
	var targets []target
	for id, d := range s.live {
		targets = append(targets, target{id, d.owner, d.name})
	}
	s.mu.Unlock()
	for _, t := range targets {
		if ctx.Err() != nil {
			return
		}
		d, err := s.store.DeviceByID(ctx, t.id)
		if err != nil {
			continue
		}
		a, err := s.Analyze(ctx, d)
		if err != nil || a.Heap == nil {
			continue
		}
		var trend struct {
			Leak              bool     `json:"leak"`
			Evidence          string   `json:"evidence"`
			Slope             float64  `json:"slope_bytes_per_hour"`
			HoursToExhaustion *float64 `json:"hours_to_exhaustion"`
			Confidence        float64  `json:"confidence"`
			Reason            string   `json:"reason"`
		}
		if json.Unmarshal(a.Heap, &trend) != nil {
			continue
		}
		alarming := trend.Leak && trend.HoursToExhaustion != nil && *trend.HoursToExhaustion <= s.cfg.AlertHorizon.Hours()
		if !alarming && trend.Evidence != "enough" {
			continue // nothing to raise, too little to clear: the last alert need not be read
		}
		active, err := s.leakAlertStands(ctx, t.id)
		if err != nil {
			s.log.Warn("device: read the last leak alert", "device", t.id, "err", err)
			continue
		}
		state := ""
		switch {
		case alarming && !active:
			state = AlertRaised
		case active && !alarming && trend.Evidence == "enough":
			// The trend ended (or slowed past the horizon). Without enough
			// evidence (a reboot just cut the series) the alert stands.
			state = AlertCleared
		}
		if state == "" {
			continue
		}
		now := s.cfg.Now()
		f := AlertFrame{Type: protocol.TypeDeviceAlert, Device: t.id, Name: t.name, Kind: "memory_leak", State: state,
			SlopeBytesPerHour: trend.Slope, Confidence: trend.Confidence, Reason: trend.Reason, At: now.UTC()}
		if state == AlertRaised {
			f.HoursToExhaustion = trend.HoursToExhaustion
		}
		s.notify(t.owner, t.id, f)
		detail, _ := json.Marshal(map[string]any{"kind": "memory_leak", "state": state, "slope_bytes_per_hour": trend.Slope,
			"hours_to_exhaustion": f.HoursToExhaustion, "confidence": trend.Confidence, "reason": trend.Reason})
		// The event is also the alert's state (leakAlertStands): if it is
		// not stored, the next check alerts again rather than never.
		if err := s.store.AppendAudit(ctx, &unhidra.AuditEvent{At: now, Action: AuditDeviceAlert, Target: t.id, Detail: string(detail)}); err != nil {
			s.log.Error("device: record a leak alert", "device", t.id, "state", state, "err", err)
		}
	}
}

// AuditDeviceAlert records an ML alert about a device.
const AuditDeviceAlert = "device.alert"

// leakAlertStands reports whether the device's last memory-leak alert in
// the audit log was raised and not cleared since.
func (s *Service) leakAlertStands(ctx context.Context, id string) (bool, error) {
	ev, err := s.store.AuditEvents(ctx, store.AuditFilter{Action: AuditDeviceAlert, Target: id, Limit: 1})
	if err != nil || len(ev) == 0 {
		return false, err
	}
	var last struct {
		Kind  string `json:"kind"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(ev[0].Detail), &last); err != nil {
		return false, fmt.Errorf("alert event %d: %w", ev[0].ID, err)
	}
	return last.Kind == "memory_leak" && last.State == AlertRaised, nil
}

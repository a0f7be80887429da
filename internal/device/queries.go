package device

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// The reads and key operations behind the device API (devicehttp). Each
// takes a device the caller was allowed to see (Service.Device), except
// List, RotateKey and Revoke, which check themselves.

// List returns the devices the actor may see (its own; all for an
// administrator), ordered by ID, after the ID after.
func (s *Service) List(ctx context.Context, a Actor, after string, limit int) ([]View, error) {
	f := store.DeviceFilter{After: after, Limit: limit}
	if !a.Admin {
		f.OwnerID = a.ID
	}
	list, err := s.store.Devices(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(list))
	for _, d := range list {
		out = append(out, s.View(d))
	}
	return out, nil
}

// Revoke revokes a device the user may see (owner or administrator) and
// closes its live connections with CloseRevoked. Returns
// protocol.ErrNotFound for devices the user may not see or that are
// already revoked.
func (s *Service) Revoke(ctx context.Context, u *unhidra.User, id string) error {
	if _, err := s.Device(ctx, ActorOf(u), id); err != nil {
		return err
	}
	if _, err := s.reg.Revoke(ctx, u, id); err != nil {
		return err
	}
	s.closeDevice(id, protocol.CloseRevoked)
	return nil
}

// SetMayDMPeople is the owner's (or an administrator's) switch for the
// device sending direct messages to people; off by default.
func (s *Service) SetMayDMPeople(ctx context.Context, u *unhidra.User, id string, allow bool) (*unhidra.Device, error) {
	d, err := s.Device(ctx, ActorOf(u), id)
	if err != nil {
		return nil, err
	}
	if err := s.store.SetDeviceMayDMPeople(ctx, id, allow); err != nil {
		return nil, err
	}
	d.MayDMPeople = allow
	s.reg.audit(ctx, u, unhidra.AuditDeviceSettings, id, map[string]any{"may_dm_people": allow})
	return d, nil
}

// MayDMPeople reports whether the device may send direct messages to
// people (messaging asks before a device opens or writes to a DM).
func (s *Service) MayDMPeople(ctx context.Context, id string) (bool, error) {
	d, err := s.store.DeviceByID(ctx, id)
	if err != nil {
		return false, err
	}
	return d.MayDMPeople && !d.Revoked(), nil
}

// RotateKey gives a device the user may see a new key and returns it.
// Connections made with the old key end (CloseBadCredentials); the device
// must be given the new key.
func (s *Service) RotateKey(ctx context.Context, u *unhidra.User, id string) (string, error) {
	if _, err := s.Device(ctx, ActorOf(u), id); err != nil {
		return "", err
	}
	_, key, err := s.reg.RotateKey(ctx, u, id)
	if err != nil {
		return "", err
	}
	s.closeDevice(id, protocol.CloseBadCredentials)
	return key, nil
}

// HeapPoint is one bucket of the free-heap series.
type HeapPoint struct {
	Start time.Time `json:"start"`
	Min   int64     `json:"min"`
	Avg   int64     `json:"avg"`
	Max   int64     `json:"max"`
	Count int64     `json:"count"`
}

// Heap returns the device's free-heap series at resolution res
// (store.HeapMinute or store.HeapHour) from since on, oldest first.
func (s *Service) Heap(ctx context.Context, d *unhidra.Device, res int, since time.Time, limit int) ([]HeapPoint, error) {
	buckets, err := s.store.HeapSeries(ctx, d.ID, res, since, limit)
	if err != nil {
		return nil, err
	}
	points := make([]HeapPoint, 0, len(buckets))
	for _, b := range buckets {
		points = append(points, HeapPoint{Start: b.Start, Min: b.Min, Avg: b.Sum / max(b.Count, 1), Max: b.Max, Count: b.Count})
	}
	return points, nil
}

// Events returns the device's audit trail, newest first, before the event
// ID before (0: from the newest).
func (s *Service) Events(ctx context.Context, d *unhidra.Device, before int64, limit int) ([]*unhidra.AuditEvent, error) {
	ev, err := s.store.AuditEvents(ctx, store.AuditFilter{Target: d.ID, Action: "device.", Before: before, Limit: limit})
	if ev == nil {
		ev = []*unhidra.AuditEvent{}
	}
	return ev, err
}

// RecentTelemetry returns the device's latest telemetry, newest first.
func (s *Service) RecentTelemetry(ctx context.Context, d *unhidra.Device, limit int) ([]unhidra.Telemetry, error) {
	tel, err := s.store.RecentTelemetry(ctx, d.ID, limit)
	if tel == nil {
		tel = []unhidra.Telemetry{}
	}
	return tel, err
}

// Commands returns the device's commands, newest first; a non-empty status
// selects one state.
func (s *Service) Commands(ctx context.Context, d *unhidra.Device, status string, limit int) ([]*unhidra.Command, error) {
	switch status {
	case "", unhidra.CommandQueued, unhidra.CommandDelivered, unhidra.CommandAcked, unhidra.CommandFailed, unhidra.CommandExpired:
	default:
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Unknown status.")
	}
	cmds, err := s.store.Commands(ctx, d.ID, status, limit)
	if cmds == nil {
		cmds = []*unhidra.Command{}
	}
	return cmds, err
}

// Command returns one of the device's commands, or protocol.ErrNotFound.
func (s *Service) Command(ctx context.Context, d *unhidra.Device, id string) (*unhidra.Command, error) {
	return s.store.CommandByID(ctx, d.ID, id)
}

// Followers returns the conversations following the device.
func (s *Service) Followers(ctx context.Context, d *unhidra.Device) ([]string, error) {
	chans, err := s.store.DeviceFollowers(ctx, d.ID)
	if chans == nil {
		chans = []string{}
	}
	return chans, err
}

// AnalyzeFor runs Analyze for an actor, within the per-user analysis rate.
func (s *Service) AnalyzeFor(ctx context.Context, a Actor, d *unhidra.Device) (*Analysis, error) {
	if s.analysis != nil {
		if ok, retry := s.analysis.perUser.Allow(a.ID, time.Now()); !ok {
			e := unhidra.Errorf(protocol.ErrRateLimited, "Too many analyses; wait a moment.")
			e.RetryAfter = int64(retry/time.Second) + 1
			return nil, e
		}
	}
	return s.Analyze(ctx, d)
}

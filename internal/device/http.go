package device

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Mount adds the device API. Every route needs a signed-in user; owners
// see their devices, administrators see all.
func (s *Service) Mount(mux *http.ServeMux, h api.Helpers) {
	user := h.RequireUser
	mux.Handle("POST /api/v1/devices", user(s.handleCreate(h)))
	mux.Handle("GET /api/v1/devices", user(s.handleList(h)))
	mux.Handle("GET /api/v1/devices/{id}", user(s.handleGet(h)))
	mux.Handle("DELETE /api/v1/devices/{id}", user(s.handleRevoke(h)))
	mux.Handle("POST /api/v1/devices/{id}/rotate-key", user(s.handleRotate(h)))
	mux.Handle("GET /api/v1/devices/{id}/heap", user(s.handleHeap(h)))
	mux.Handle("GET /api/v1/devices/{id}/analysis", user(s.handleAnalysis(h)))
	s.mountFollowers(mux, h)
	mux.Handle("GET /api/v1/devices/{id}/events", user(s.handleEvents(h)))
	mux.Handle("GET /api/v1/devices/{id}/telemetry", user(s.handleTelemetryList(h)))
	mux.Handle("POST /api/v1/devices/{id}/commands", user(s.handleCommandCreate(h)))
	mux.Handle("GET /api/v1/devices/{id}/commands", user(s.handleCommandList(h)))
	mux.Handle("GET /api/v1/devices/{id}/commands/{cmd}", user(s.handleCommandGet(h)))
}

func actorOf(r *http.Request) Actor { return ActorOf(auth.UserFromContext(r.Context())) }

// queryInt reads an optional non-negative integer query parameter.
// deviceView serves a read about the device {id}, which the caller must be
// allowed to see (others get 404, as for a device that does not exist):
// fn's result is written as JSON, or its error as the API's error.
func (s *Service) deviceView(h api.Helpers, fn func(r *http.Request, d *unhidra.Device) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := s.Device(r.Context(), actorOf(r), r.PathValue("id"))
		if err != nil {
			h.Error(w, r, err)
			return
		}
		out, err := fn(r, d)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		h.JSON(w, http.StatusOK, out)
	})
}

func queryInt(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || len(v) > 10 {
		return 0, unhidra.Errorf(protocol.ErrInvalid, "%s must be a non-negative integer.", name)
	}
	return n, nil
}

func (s *Service) handleCreate(h api.Helpers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := api.DecodeValid[*Registration](w, r)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		d, key, err := s.reg.Register(r.Context(), auth.UserFromContext(r.Context()), *req)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h.JSON(w, http.StatusCreated, map[string]any{"device": s.View(d), "api_key": key})
	})
}

func (s *Service) handleList(h api.Helpers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := actorOf(r)
		limit, err := queryInt(r, "limit")
		if err != nil {
			h.Error(w, r, err)
			return
		}
		f := store.DeviceFilter{After: r.URL.Query().Get("after"), Limit: limit}
		if !a.Admin {
			f.OwnerID = a.ID
		}
		list, err := s.store.Devices(r.Context(), f)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		out := make([]View, 0, len(list))
		for _, d := range list {
			out = append(out, s.View(d))
		}
		h.JSON(w, http.StatusOK, map[string]any{"devices": out})
	})
}

func (s *Service) handleGet(h api.Helpers) http.Handler {
	return s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		return map[string]any{"device": s.View(d)}, nil
	})
}

// Revoke revokes a device the user may see (owner or administrator) and
// closes its live connections with CloseRevoked. Returns protocol.ErrNotFound for
// devices the user may not see or that are already revoked.
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

func (s *Service) handleRevoke(h api.Helpers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Revoke(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id")); err != nil {
			h.Error(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Service) handleRotate(h api.Helpers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, err := s.Device(r.Context(), actorOf(r), id); err != nil {
			h.Error(w, r, err)
			return
		}
		_, key, err := s.reg.RotateKey(r.Context(), auth.UserFromContext(r.Context()), id)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		// Connections made with the old key end; the device must be given
		// the new key.
		s.closeDevice(id, protocol.CloseBadCredentials)
		w.Header().Set("Cache-Control", "no-store")
		h.JSON(w, http.StatusOK, map[string]any{"api_key": key})
	})
}

// HeapPoint is one bucket of the free-heap series.
type HeapPoint struct {
	Start time.Time `json:"start"`
	Min   int64     `json:"min"`
	Avg   int64     `json:"avg"`
	Max   int64     `json:"max"`
	Count int64     `json:"count"`
}

func (s *Service) handleHeap(h api.Helpers) http.Handler {
	return s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		q := r.URL.Query()
		res, name := store.HeapMinute, "minute"
		switch q.Get("res") {
		case "", "minute":
		case "hour":
			res, name = store.HeapHour, "hour"
		default:
			return nil, unhidra.Errorf(protocol.ErrInvalid, "res must be minute or hour.")
		}
		var since time.Time
		if v := q.Get("since"); v != "" {
			var err error
			if since, err = time.Parse(time.RFC3339, v); err != nil || len(v) > 40 {
				return nil, unhidra.Errorf(protocol.ErrInvalid, "since must be an RFC 3339 time.")
			}
		}
		limit, err := queryInt(r, "limit")
		if err != nil {
			return nil, err
		}
		buckets, err := s.store.HeapSeries(r.Context(), d.ID, res, since, limit)
		if err != nil {
			return nil, err
		}
		points := make([]HeapPoint, 0, len(buckets))
		for _, b := range buckets {
			points = append(points, HeapPoint{Start: b.Start, Min: b.Min, Avg: b.Sum / max(b.Count, 1), Max: b.Max, Count: b.Count})
		}
		return map[string]any{"device": d.ID, "resolution": name, "points": points}, nil
	})
}

func (s *Service) handleEvents(h api.Helpers) http.Handler {
	return s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		before, err := queryInt(r, "before")
		if err != nil {
			return nil, err
		}
		limit, err := queryInt(r, "limit")
		if err != nil {
			return nil, err
		}
		ev, err := s.store.AuditEvents(r.Context(), store.AuditFilter{Target: d.ID, Action: "device.", Before: int64(before), Limit: limit})
		if ev == nil {
			ev = []*unhidra.AuditEvent{}
		}
		return map[string]any{"events": ev}, err
	})
}

func (s *Service) handleTelemetryList(h api.Helpers) http.Handler {
	return s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		limit, err := queryInt(r, "limit")
		if err != nil {
			return nil, err
		}
		tel, err := s.store.RecentTelemetry(r.Context(), d.ID, limit)
		if tel == nil {
			tel = []unhidra.Telemetry{}
		}
		return map[string]any{"telemetry": tel}, err
	})
}

func (s *Service) handleCommandCreate(h api.Helpers) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := api.DecodeValid[*CommandRequest](w, r)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		cmd, err := s.SendCommand(r.Context(), actorOf(r), r.PathValue("id"), *req)
		if err != nil {
			h.Error(w, r, err)
			return
		}
		h.JSON(w, http.StatusCreated, map[string]any{"command": cmd})
	})
}

func (s *Service) handleCommandList(h api.Helpers) http.Handler {
	return s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		status := r.URL.Query().Get("status")
		switch status {
		case "", unhidra.CommandQueued, unhidra.CommandDelivered, unhidra.CommandAcked, unhidra.CommandFailed, unhidra.CommandExpired:
		default:
			return nil, unhidra.Errorf(protocol.ErrInvalid, "Unknown status.")
		}
		limit, err := queryInt(r, "limit")
		if err != nil {
			return nil, err
		}
		cmds, err := s.store.Commands(r.Context(), d.ID, status, limit)
		if cmds == nil {
			cmds = []*unhidra.Command{}
		}
		return map[string]any{"commands": cmds}, err
	})
}

func (s *Service) handleCommandGet(h api.Helpers) http.Handler {
	return s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		cmd, err := s.store.CommandByID(r.Context(), d.ID, r.PathValue("cmd"))
		return map[string]any{"command": cmd}, err
	})
}

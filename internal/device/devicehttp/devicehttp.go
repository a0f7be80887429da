// Package devicehttp is the device service's REST adapter: the
// /api/v1/devices routes, decoded and authenticated the API's way and
// answered by calls of device.Service.
package devicehttp

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Mount returns the function that adds the device API. Every route needs
// a signed-in user; owners see their devices, administrators see all.
func Mount(s *device.Service) func(mux *http.ServeMux, h api.Helpers) {
	return func(mux *http.ServeMux, h api.Helpers) {
		a := adapter{s, h}
		user := h.RequireUser
		mux.Handle("POST /api/v1/devices", user(a.create()))
		mux.Handle("GET /api/v1/devices", user(a.list()))
		mux.Handle("GET /api/v1/devices/{id}", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			return map[string]any{"device": s.View(d)}, nil
		})))
		mux.Handle("DELETE /api/v1/devices/{id}", user(a.noContent(func(r *http.Request) error {
			return s.Revoke(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id"))
		})))
		mux.Handle("POST /api/v1/devices/{id}/rotate-key", user(a.rotate()))
		mux.Handle("PATCH /api/v1/devices/{id}", user(a.settings()))
		mux.Handle("GET /api/v1/devices/{id}/heap", user(a.view(a.heap)))
		mux.Handle("GET /api/v1/devices/{id}/analysis", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			an, err := s.AnalyzeFor(r.Context(), actorOf(r), d)
			return map[string]any{"analysis": an}, err
		})))
		mux.Handle("GET /api/v1/devices/{id}/channels", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			chans, err := s.Followers(r.Context(), d)
			return map[string]any{"channels": chans}, err
		})))
		mux.Handle("POST /api/v1/devices/{id}/channels", user(a.follow()))
		mux.Handle("DELETE /api/v1/devices/{id}/channels/{channel}", user(a.noContent(func(r *http.Request) error {
			return s.Unfollow(r.Context(), actorOf(r), r.PathValue("id"), r.PathValue("channel"))
		})))
		mux.Handle("GET /api/v1/devices/{id}/events", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			before, err := queryInt(r, "before")
			if err != nil {
				return nil, err
			}
			limit, err := queryInt(r, "limit")
			if err != nil {
				return nil, err
			}
			ev, err := s.Events(r.Context(), d, int64(before), limit)
			return map[string]any{"events": ev}, err
		})))
		mux.Handle("GET /api/v1/devices/{id}/telemetry", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			limit, err := queryInt(r, "limit")
			if err != nil {
				return nil, err
			}
			tel, err := s.RecentTelemetry(r.Context(), d, limit)
			return map[string]any{"telemetry": tel}, err
		})))
		mux.Handle("POST /api/v1/devices/{id}/commands", user(a.commandCreate()))
		mux.Handle("GET /api/v1/devices/{id}/commands", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			limit, err := queryInt(r, "limit")
			if err != nil {
				return nil, err
			}
			cmds, err := s.Commands(r.Context(), d, r.URL.Query().Get("status"), limit)
			return map[string]any{"commands": cmds}, err
		})))
		mux.Handle("GET /api/v1/devices/{id}/commands/{cmd}", user(a.view(func(r *http.Request, d *unhidra.Device) (any, error) {
			cmd, err := s.Command(r.Context(), d, r.PathValue("cmd"))
			return map[string]any{"command": cmd}, err
		})))
	}
}

type adapter struct {
	s *device.Service
	h api.Helpers
}

func actorOf(r *http.Request) device.Actor { return device.ActorOf(auth.UserFromContext(r.Context())) }

// view serves a read about the device {id}, which the caller must be
// allowed to see (others get 404, as for a device that does not exist):
// fn's result is written as JSON, or its error as the API's error.
func (a adapter) view(fn func(r *http.Request, d *unhidra.Device) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := a.s.Device(r.Context(), actorOf(r), r.PathValue("id"))
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		out, err := fn(r, d)
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		a.h.JSON(w, http.StatusOK, out)
	})
}

// noContent serves an action answered with 204.
func (a adapter) noContent(fn func(r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r); err != nil {
			a.h.Error(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// queryInt reads an optional non-negative integer query parameter.
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

func (a adapter) create() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := api.DecodeValid[*device.Registration](w, r)
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		d, key, err := a.s.Registry().Register(r.Context(), auth.UserFromContext(r.Context()), *req)
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		a.h.JSON(w, http.StatusCreated, map[string]any{"device": a.s.View(d), "api_key": key})
	})
}

func (a adapter) list() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, err := queryInt(r, "limit")
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		out, err := a.s.List(r.Context(), actorOf(r), r.URL.Query().Get("after"), limit)
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		a.h.JSON(w, http.StatusOK, map[string]any{"devices": out})
	})
}

func (a adapter) rotate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := a.s.RotateKey(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id"))
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		a.h.JSON(w, http.StatusOK, map[string]any{"api_key": key})
	})
}

func (a adapter) heap(r *http.Request, d *unhidra.Device) (any, error) {
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
	points, err := a.s.Heap(r.Context(), d, res, since, limit)
	if err != nil {
		return nil, err
	}
	return map[string]any{"device": d.ID, "resolution": name, "points": points}, nil
}

func (a adapter) commandCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := api.DecodeValid[*device.CommandRequest](w, r)
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		cmd, err := a.s.SendCommand(r.Context(), actorOf(r), r.PathValue("id"), *req)
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		a.h.JSON(w, http.StatusCreated, map[string]any{"command": cmd})
	})
}

// settingsRequest changes what the owner controls about a device.
type settingsRequest struct {
	MayDMPeople *bool `json:"may_dm_people"`
}

func (q *settingsRequest) Valid(context.Context) error {
	if q.MayDMPeople == nil {
		return unhidra.Errorf(protocol.ErrInvalid, "may_dm_people is required.")
	}
	return nil
}

// settings is PATCH /api/v1/devices/{id}: the owner allows (or stops) the
// device sending direct messages to people.
func (a adapter) settings() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := api.DecodeValid[*settingsRequest](w, r)
		var d *unhidra.Device
		if err == nil {
			d, err = a.s.SetMayDMPeople(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id"), *in.MayDMPeople)
		}
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		a.h.JSON(w, http.StatusOK, map[string]any{"device": a.s.View(d)})
	})
}

type followRequest struct {
	Channel string `json:"channel"`
}

func (f *followRequest) Valid(context.Context) error {
	if f.Channel == "" || len(f.Channel) > 64 {
		return unhidra.Errorf(protocol.ErrInvalid, "channel is required.")
	}
	return nil
}

func (a adapter) follow() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := api.DecodeValid[*followRequest](w, r)
		if err == nil {
			err = a.s.Follow(r.Context(), actorOf(r), r.PathValue("id"), in.Channel)
		}
		if err != nil {
			a.h.Error(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

package device

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/protocol"
)

// followersTTL bounds how stale this node's view of a device's followers
// may be (another node may have changed them).
const followersTTL = time.Minute

type followerCache struct {
	mu      sync.Mutex
	entries map[string]followerEntry // device → channels; guarded by mu
}

type followerEntry struct {
	channels []string
	loaded   time.Time
}

// followers returns the conversations following a device, cached.
func (s *Service) followers(ctx context.Context, deviceID string) []string {
	now := time.Now()
	s.follow.mu.Lock()
	e, ok := s.follow.entries[deviceID]
	s.follow.mu.Unlock()
	if ok && now.Sub(e.loaded) < followersTTL {
		return e.channels
	}
	channels, err := s.store.DeviceFollowers(ctx, deviceID)
	if err != nil {
		s.log.Warn("device followers", "device", deviceID, "err", err)
		return e.channels
	}
	s.follow.mu.Lock()
	if s.follow.entries == nil {
		s.follow.entries = map[string]followerEntry{}
	}
	s.follow.entries[deviceID] = followerEntry{channels: channels, loaded: now}
	s.follow.mu.Unlock()
	return channels
}

func (s *Service) forgetFollowers(deviceID string) {
	s.follow.mu.Lock()
	delete(s.follow.entries, deviceID)
	s.follow.mu.Unlock()
}

// channelFrame is a device's state or alert as seen in a channel that
// follows it: the same frame with the channel it arrives for.
func channelFrame(frame any, channel string) ([]byte, bool) {
	switch frame.(type) {
	case StateFrame, AlertFrame:
	default:
		return nil, false // command status stays with the owner
	}
	b, err := json.Marshal(frame)
	if err != nil {
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil, false
	}
	m["channel"] = channel
	out, err := json.Marshal(m)
	return out, err == nil
}

// Follow makes a channel follow a device: the device's owner (or an
// administrator) who is a member of the channel may.
func (s *Service) Follow(ctx context.Context, a Actor, deviceID, channel string) error {
	if _, err := s.Device(ctx, a, deviceID); err != nil {
		return err
	}
	if _, err := s.store.Membership(ctx, channel, a.ID); err != nil {
		if unhidra.ErrorCode(err) == protocol.ErrNotFound {
			return unhidra.Errorf(protocol.ErrNotFound, "No such channel, or you are not a member.")
		}
		return err
	}
	if err := s.store.FollowDevice(ctx, deviceID, channel, a.ID); err != nil {
		return err
	}
	s.forgetFollowers(deviceID)
	return nil
}

// Unfollow stops a channel following a device.
func (s *Service) Unfollow(ctx context.Context, a Actor, deviceID, channel string) error {
	if _, err := s.Device(ctx, a, deviceID); err != nil {
		return err
	}
	if err := s.store.UnfollowDevice(ctx, deviceID, channel); err != nil {
		return err
	}
	s.forgetFollowers(deviceID)
	return nil
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

func (s *Service) mountFollowers(mux *http.ServeMux, h api.Helpers) {
	user := h.RequireUser
	mux.Handle("GET /api/v1/devices/{id}/channels", user(s.deviceView(h, func(r *http.Request, d *unhidra.Device) (any, error) {
		chans, err := s.store.DeviceFollowers(r.Context(), d.ID)
		if chans == nil {
			chans = []string{}
		}
		return map[string]any{"channels": chans}, err
	})))
	mux.Handle("POST /api/v1/devices/{id}/channels", user(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := api.DecodeValid[*followRequest](w, r)
		if err == nil {
			err = s.Follow(r.Context(), actorOf(r), r.PathValue("id"), in.Channel)
		}
		if err != nil {
			h.Error(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.Handle("DELETE /api/v1/devices/{id}/channels/{channel}", user(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Unfollow(r.Context(), actorOf(r), r.PathValue("id"), r.PathValue("channel")); err != nil {
			h.Error(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
}

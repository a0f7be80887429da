package device

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
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

// prune drops entries older than followersTTL (they would be read again
// anyway), so the cache holds only devices that changed state lately, not
// every device that ever connected.
func (c *followerCache) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.entries {
		if now.Sub(e.loaded) >= followersTTL {
			delete(c.entries, id)
		}
	}
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
	if s.convs == nil {
		return unhidra.Errorf(protocol.ErrUnavailable, "Channels cannot follow devices on this server.")
	}
	if err := s.convs.RequireMember(ctx, channel, a.ID); err != nil {
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

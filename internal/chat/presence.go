package chat

import (
	"context"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/protocol"
)

// Presence statuses.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusOffline = "offline"
)

// presence tracks, per identity, its live connections on this node, the
// status it chose and when it was last seen.
type presence struct {
	node   string        // this node's ID; static
	expiry time.Duration // how long another node's word holds; static

	mu       sync.Mutex
	entries  map[string]*presenceEntry         // guarded by mu; this node's connections
	remote   map[string]map[string]remoteEntry // guarded by mu; identity → node → what it said
	nodes    map[string]time.Time              // guarded by mu; other nodes → last heard
	deferred map[string]bool                   // guarded by mu; offline to announce when the other node lets go
}

type presenceEntry struct {
	conns    int
	status   string    // online or away while conns > 0
	lastSeen time.Time // when the last connection closed
}

// PresenceInfo is one identity's presence as clients see it.
type PresenceInfo struct {
	Type     string    `json:"type,omitempty"`
	User     string    `json:"user"`
	Status   string    `json:"status"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

type presenceSnapshot struct {
	Type  string         `json:"type"`
	Users []PresenceInfo `json:"users"`
}

// Presence returns an identity's presence on this node.
func (s *Service) Presence(identity string) PresenceInfo {
	s.presence.mu.Lock()
	defer s.presence.mu.Unlock()
	return s.presence.infoLocked(identity)
}

func (p *presence) infoLocked(identity string) PresenceInfo {
	info := PresenceInfo{User: identity, Status: StatusOffline}
	if e := p.entries[identity]; e != nil {
		info.LastSeen = e.lastSeen
		if e.conns > 0 {
			info.Status = e.status
			return info
		}
	}
	if st := p.remoteStatusLocked(identity); st != "" {
		info.Status = st // held by another node
	}
	return info
}

// presenceConnect counts a connection; the identity's first one makes it
// online for everyone sharing a conversation with it. The new connection
// gets a snapshot of those co-members that are online or away.
func (s *Service) presenceConnect(ctx context.Context, c hub.Client) {
	id := c.Identity()
	s.presence.mu.Lock()
	wasAbsent := s.presence.absentLocked(id)
	e := s.presence.entries[id]
	if e == nil {
		e = &presenceEntry{}
		s.presence.entries[id] = e
	}
	e.conns++
	first := e.conns == 1
	if first {
		e.status = StatusOnline
		delete(s.presence.deferred, id)
	}
	s.presence.mu.Unlock()
	if first {
		s.notePresence(presenceNote{Identity: id, Status: StatusOnline})
	}

	co, err := s.coMembers(ctx, id)
	if err != nil {
		s.log.Warn("presence: co-members", "identity", id, "err", err)
		return
	}
	snap := presenceSnapshot{Type: protocol.TypePresenceSnapshot, Users: []PresenceInfo{}}
	s.presence.mu.Lock()
	for _, other := range co {
		if info := s.presence.infoLocked(other); info.Status != StatusOffline {
			snap.Users = append(snap.Users, info)
		}
	}
	s.presence.mu.Unlock()
	c.Send(prepare(snap))
	if first && wasAbsent { // already online on another node otherwise
		s.broadcastPresence(id, co)
	}
}

// presenceDisconnect uncounts a connection; the identity's last one makes
// it offline, with its last-seen time.
func (s *Service) presenceDisconnect(ctx context.Context, id string) {
	s.presence.mu.Lock()
	e := s.presence.entries[id]
	last, elsewhere := false, false
	if e != nil && e.conns > 0 {
		e.conns--
		if e.conns == 0 {
			last = true
			e.lastSeen = s.cfg.Now().UTC().Truncate(time.Millisecond)
			if elsewhere = len(s.presence.remote[id]) > 0; elsewhere {
				// Still online on another node: offline waits for it.
				s.presence.deferred[id] = true
			}
		}
	}
	s.presence.mu.Unlock()
	if !last {
		return
	}
	s.notePresence(presenceNote{Identity: id})
	if elsewhere {
		return
	}
	co, err := s.coMembers(ctx, id)
	if err != nil {
		s.log.Warn("presence: co-members", "identity", id, "err", err)
		return
	}
	s.broadcastPresence(id, co)
}

// SetStatus sets a connected identity's status (online or away) and tells
// its co-members when it changed.
func (s *Service) SetStatus(ctx context.Context, id, status string) {
	s.presence.mu.Lock()
	e := s.presence.entries[id]
	changed := e != nil && e.conns > 0 && e.status != status
	if changed {
		e.status = status
	}
	s.presence.mu.Unlock()
	if !changed {
		return
	}
	s.notePresence(presenceNote{Identity: id, Status: status})
	co, err := s.coMembers(ctx, id)
	if err != nil {
		s.log.Warn("presence: co-members", "identity", id, "err", err)
		return
	}
	s.broadcastPresence(id, co)
}

// broadcastPresence sends id's current presence to its co-members and its
// own connections; nobody else learns it.
func (s *Service) broadcastPresence(id string, co []string) {
	s.presence.mu.Lock()
	info := s.presence.infoLocked(id)
	s.presence.mu.Unlock()
	info.Type = protocol.TypePresence
	for _, other := range co {
		if !s.quiet(other) {
			s.sendTo(other, info)
		}
	}
	s.sendTo(id, info)
}

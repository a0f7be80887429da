package chat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"
)

// Presence across a cluster. Each node counts its own connections of an
// identity; the nodes tell each other on the bus when an identity appears
// on or leaves a node, and every node re-announces its roster each
// refresh period, so a lost note or a crashed node heals by expiry. An
// identity is offline only when no node holds a connection of it.
//
// Who announces a change to co-members: the node where it happened. When
// an identity's last local connection goes while another node still holds
// it, the announcement waits ("deferred") until that node reports it gone.
// When a node vanishes without a word, the live node with the lowest ID
// announces the identities that only it held.

const presenceSubject = "chat.presence"

// presenceNote is what nodes tell each other.
type presenceNote struct {
	Node     string            `json:"node"`
	Identity string            `json:"identity,omitempty"`
	Status   string            `json:"status,omitempty"` // "" with Identity: gone from that node
	Roster   map[string]string `json:"roster,omitempty"` // identity → status, a periodic refresh
	Final    bool              `json:"final,omitempty"`  // the node is leaving
}

type remoteEntry struct {
	status    string
	refreshed time.Time
}

func newNodeID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// remoteStatusLocked returns the best status another node reports for id:
// online over away, "" if none. s.presence.mu is held.
func (p *presence) remoteStatusLocked(id string) string {
	best := ""
	for _, e := range p.remote[id] {
		if e.status == StatusOnline {
			return StatusOnline
		}
		best = e.status
	}
	return best
}

func (s *Service) notePresence(n presenceNote) {
	n.Node = s.presence.node
	data, _ := json.Marshal(n)
	if err := s.router.Bus().Publish(s.ctx, presenceSubject, data); err != nil {
		s.log.Warn("presence: note not sent to the cluster", "err", err)
	}
}

// onPresenceNote applies another node's note.
func (s *Service) onPresenceNote(data []byte) {
	var n presenceNote
	if json.Unmarshal(data, &n) != nil || n.Node == "" || n.Node == s.presence.node {
		return
	}
	now := s.cfg.Now()
	var gone []string // identities now offline everywhere, to announce here
	p := &s.presence
	p.mu.Lock()
	p.nodes[n.Node] = now
	set := func(id, status string) {
		if p.remote[id] == nil {
			p.remote[id] = map[string]remoteEntry{}
		}
		p.remote[id][n.Node] = remoteEntry{status: status, refreshed: now}
	}
	drop := func(id string, announce bool) {
		if _, ok := p.remote[id][n.Node]; !ok {
			return
		}
		delete(p.remote[id], n.Node)
		if len(p.remote[id]) == 0 {
			delete(p.remote, id)
		}
		if announce && p.absentLocked(id) {
			gone = append(gone, id)
			delete(p.deferred, id)
		}
	}
	switch {
	case n.Final:
		leader := p.leaderLocked(now, n.Node)
		for id := range p.remote {
			drop(id, p.deferred[id] || leader)
		}
		delete(p.nodes, n.Node)
	case n.Roster != nil:
		for id, st := range n.Roster {
			set(id, st)
		}
	case n.Identity != "" && n.Status != "":
		set(n.Identity, n.Status)
	case n.Identity != "":
		drop(n.Identity, p.deferred[n.Identity])
	}
	p.mu.Unlock()
	s.announceOffline(gone, now)
}

// absentLocked reports whether no node, this one included, holds id.
func (p *presence) absentLocked(id string) bool {
	e := p.entries[id]
	return (e == nil || e.conns == 0) && len(p.remote[id]) == 0
}

// leaderLocked reports whether this node has the lowest ID among the
// nodes heard from recently (not counting except, a node that left).
func (p *presence) leaderLocked(now time.Time, except string) bool {
	for node, heard := range p.nodes {
		if node != except && now.Sub(heard) < p.expiry && node < p.node {
			return false
		}
	}
	return true
}

func (s *Service) announceOffline(ids []string, now time.Time) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	for _, id := range ids {
		s.presence.mu.Lock()
		if e := s.presence.entries[id]; e != nil && e.lastSeen.IsZero() {
			e.lastSeen = now.UTC().Truncate(time.Millisecond)
		}
		s.presence.mu.Unlock()
		co, err := s.coMembers(ctx, id)
		if err != nil {
			s.log.Warn("presence: co-members", "identity", id, "err", err)
			continue
		}
		s.broadcastPresence(id, co)
	}
}

// refreshPresence re-announces this node's roster and expires what other
// nodes stopped confirming. The service's presence loop calls it every
// refresh period.
func (s *Service) refreshPresence() {
	now := s.cfg.Now()
	p := &s.presence
	p.mu.Lock()
	roster := map[string]string{}
	for id, e := range p.entries {
		if e.conns > 0 {
			roster[id] = e.status
		}
	}
	var gone []string
	leader := p.leaderLocked(now, "")
	for id, byNode := range p.remote {
		for node, e := range byNode {
			if now.Sub(e.refreshed) >= p.expiry {
				delete(byNode, node)
			}
		}
		if len(byNode) == 0 {
			delete(p.remote, id)
			if (p.deferred[id] || leader) && p.absentLocked(id) {
				gone = append(gone, id)
				delete(p.deferred, id)
			}
		}
	}
	for node, heard := range p.nodes {
		if now.Sub(heard) >= p.expiry {
			delete(p.nodes, node)
		}
	}
	p.mu.Unlock()
	// Rosters go in pieces that stay far below NATS's message size limit.
	ids := make([]string, 0, len(roster))
	for id := range roster {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for chunk := range slices.Chunk(ids, 2000) {
		part := make(map[string]string, len(chunk))
		for _, id := range chunk {
			part[id] = roster[id]
		}
		s.notePresence(presenceNote{Roster: part})
	}
	s.announceOffline(gone, now)
}

func (s *Service) runPresence() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PresenceRefresh)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.refreshPresence()
		case <-s.ctx.Done():
			return
		}
	}
}

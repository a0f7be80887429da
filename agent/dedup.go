package agent

import "sync"

// maxRemembered bounds the command ids the agent remembers. The server
// re-sends at most its command window of unanswered commands after a
// reconnect, so a few hundred ids cover many reconnects.
const maxRemembered = 512

// seenCommands remembers recent command ids across connections, so a
// command the server sends again (delivery is at least once) is not run
// twice: its ack is sent again instead. Safe for concurrent use.
type seenCommands struct {
	mu    sync.Mutex
	acks  map[string]*ack // nil value: still running
	order []string        // ids, oldest first, for eviction
}

// claim records id as running unless it is known. It reports whether
// the command was already answered (with the recorded ack) or, when done
// is false and prev is non-nil, still runs.
func (s *seenCommands) claim(id string) (done bool, prev *ack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acks == nil {
		s.acks = map[string]*ack{}
	}
	if a, ok := s.acks[id]; ok {
		if a == nil {
			return false, &ack{ID: id}
		}
		return true, a
	}
	s.acks[id] = nil
	s.order = append(s.order, id)
	for len(s.order) > maxRemembered {
		// Evict the oldest answered id; running ones stay (there are at
		// most MaxConcurrentCommands + the window of them).
		evicted := false
		for i, old := range s.order {
			if s.acks[old] != nil {
				delete(s.acks, old)
				s.order = append(s.order[:i], s.order[i+1:]...)
				evicted = true
				break
			}
		}
		if !evicted {
			break
		}
	}
	return false, nil
}

// finish records the ack of a command.
func (s *seenCommands) finish(id string, a *ack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.acks[id]; ok {
		s.acks[id] = a
	}
}

// forget drops id: a command cut short by the end of its connection runs
// again when the server re-sends it.
func (s *seenCommands) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.acks[id]; !ok {
		return
	}
	delete(s.acks, id)
	for i, old := range s.order {
		if old == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

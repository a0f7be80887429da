package auth

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// Session epochs, and how a change reaches every node
//
// Each access token carries its user's session epoch (claim "sep"). A
// change that must end sessions (password change or reset, disable, role
// change, sign out everywhere) increments the epoch in the same transaction
// that records an identity event, so tokens issued before it fail the check
// in userFor: 401 on every API call, every WebSocket handshake and refresh.
//
// The check reads the user from a per-node cache, not the database: an
// entry lives at most CacheTTL and is dropped at once when a change notice
// arrives, by either path:
//
//   - the bus: the node that made the change publishes the identity
//     (PublishChange); every node, itself included, calls IdentityChanged;
//   - the database: WatchIdentityEvents polls identity_events (one indexed
//     query per interval, 250 ms by default), which also carries changes
//     made by `unhidra admin` writing the database of a running server.
//
// IdentityChanged re-reads the user and passes its state to
// OnIdentityChange, which closes the live connections whose token epoch is
// older (and, when the user is disabled or gone, the user's devices).

// IdentityState is what connections of an identity are checked against.
type IdentityState struct {
	ID     string
	Epoch  int64 // connections with an older token epoch must close
	Active bool  // false: disabled or deleted; close everything, devices too
}

type cachedUser struct {
	u  *unhidra.User
	at time.Time
}

func (s *Service) cacheTTL() time.Duration { return cmpOr(s.CacheTTL, time.Minute) }

// cachedUser returns a copy of the user, from the cache when fresh.
func (s *Service) cachedUser(ctx context.Context, id string) (*unhidra.User, error) {
	now := time.Now()
	s.cacheMu.RLock()
	e, ok := s.cache[id]
	s.cacheMu.RUnlock()
	if ok && now.Sub(e.at) < s.cacheTTL() {
		cp := *e.u
		return &cp, nil
	}
	gen := s.gen.Load()
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return nil, err
	}
	s.cacheMu.Lock()
	// An invalidation since the read began may mean u is already stale:
	// use it for this request only.
	if s.gen.Load() == gen {
		if len(s.cache) >= s.limits.MaxTrackedKeys {
			clear(s.cache)
		}
		s.cache[id] = cachedUser{u: u, at: now}
	}
	s.cacheMu.Unlock()
	cp := *u
	return &cp, nil
}

func (s *Service) invalidate(id string) {
	s.cacheMu.Lock()
	s.gen.Add(1)
	delete(s.cache, id)
	s.cacheMu.Unlock()
}

// changed announces that id changed: over the bus when there is one, else
// on this node only (the database watcher tells the other processes).
func (s *Service) changed(ctx context.Context, id string) {
	s.invalidate(id)
	if s.PublishChange != nil {
		s.PublishChange(id)
		return
	}
	s.IdentityChanged(ctx, id)
}

// IdentityChanged drops what this node cached about the identity and
// reports its current state to OnIdentityChange. It is idempotent: the bus
// and the database watcher may both deliver the same change.
func (s *Service) IdentityChanged(ctx context.Context, id string) {
	s.invalidate(id)
	st := IdentityState{ID: id}
	u, err := s.cachedUser(ctx, id)
	switch {
	case err == nil:
		st.Epoch, st.Active = u.SessionEpoch, !u.Disabled
	case unhidra.ErrorCode(err) == protocol.ErrNotFound:
		// Deleted: nothing of it may stay connected.
	default:
		s.log.Error("identity change: read user", "identity", id, "err", err)
		return
	}
	if s.OnIdentityChange != nil {
		s.OnIdentityChange(st)
	}
}

// UserActive reports whether the user exists and is enabled, from the
// cache (devices check their owner with it at every handshake).
func (s *Service) UserActive(ctx context.Context, id string) (bool, error) {
	u, err := s.cachedUser(ctx, id)
	if unhidra.ErrorCode(err) == protocol.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !u.Disabled, nil
}

// UserState returns the identity's current state (from the cache).
func (s *Service) UserState(ctx context.Context, id string) (IdentityState, error) {
	u, err := s.cachedUser(ctx, id)
	if unhidra.ErrorCode(err) == protocol.ErrNotFound {
		return IdentityState{ID: id}, nil
	}
	if err != nil {
		return IdentityState{}, err
	}
	return IdentityState{ID: id, Epoch: u.SessionEpoch, Active: !u.Disabled}, nil
}

// identityLookback is how far below the highest sequence number seen the
// watcher looks again: PostgreSQL assigns sequence numbers before commit,
// so a transaction that started earlier can commit a lower one later.
const identityLookback = 32

// WatchIdentityEvents polls the identity events every interval (250 ms
// when 0) and calls IdentityChanged for each new one, until ctx ends. Events
// older than a day are pruned now and then.
func (s *Service) WatchIdentityEvents(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	var high int64
	for {
		var err error
		if high, err = s.store.LastIdentityEvent(ctx); err == nil {
			break
		}
		s.log.Warn("identity events: read position", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	seen := make(map[int64]bool)
	t := time.NewTicker(interval)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		events, err := s.store.IdentityEvents(ctx, max(high-identityLookback, 0), 1000)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("identity events: poll", "err", err)
			}
			continue
		}
		for _, e := range events {
			if e.Seq <= high-identityLookback || seen[e.Seq] {
				continue
			}
			seen[e.Seq] = true
			high = max(high, e.Seq)
			s.IdentityChanged(ctx, e.Identity)
		}
		for seq := range seen {
			if seq <= high-identityLookback {
				delete(seen, seq)
			}
		}
		if time.Since(lastPrune) > 10*time.Minute {
			lastPrune = time.Now()
			if _, err := s.store.PruneIdentityEvents(ctx, time.Now().Add(-24*time.Hour)); err != nil {
				s.log.Warn("identity events: prune", "err", err)
			}
		}
	}
}

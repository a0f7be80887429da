package chat

import (
	"context"
	"sync"

	"github.com/unhidra/unhidra"
)

// nameCache maps identities (users, bots, devices) to their names for
// message frames. Account names never change; device names rarely do, and a
// stale one only shows until the cache forgets it. Bounded: past maxNames
// entries it starts over.
type nameCache struct {
	st  Store
	ids Identities // nil: accounts only

	mu    sync.Mutex
	names map[string]who // guarded by mu
}

// who is an identity's name and kind as message frames show them.
type who struct{ name, kind string }

// Kinds of senders (the from_kind of frames): people, bots (service
// accounts) and devices. Clients mark bots and devices visibly, so that
// nothing passes for a person.
const (
	KindUser   = "user"
	KindBot    = "bot"
	KindDevice = "device"
)

const maxNames = 50_000

func (c *nameCache) name(ctx context.Context, id string) string { return c.who(ctx, id).name }

func (c *nameCache) kind(ctx context.Context, id string) string { return c.who(ctx, id).kind }

func (c *nameCache) who(ctx context.Context, id string) who {
	c.mu.Lock()
	w, ok := c.names[id]
	c.mu.Unlock()
	if ok {
		return w
	}
	if u, err := c.st.UserByID(ctx, id); err == nil {
		w = who{u.Name, KindUser}
		if u.Role == unhidra.RoleBot {
			w.kind = KindBot
		}
	} else if c.ids != nil {
		if n, _, _, err := c.ids.LookupIdentity(ctx, id); err == nil {
			w = who{n, KindDevice}
		}
	}
	if w.name == "" {
		return who{} // unknown or a failed lookup: do not remember it
	}
	c.mu.Lock()
	if c.names == nil || len(c.names) >= maxNames {
		c.names = make(map[string]who)
	}
	c.names[id] = w
	c.mu.Unlock()
	return w
}

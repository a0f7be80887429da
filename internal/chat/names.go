package chat

import (
	"context"
	"sync"
)

// nameCache maps identities (users, bots, devices) to their names for
// message frames. Account names never change; device names rarely do, and a
// stale one only shows until the cache forgets it. Bounded: past maxNames
// entries it starts over.
type nameCache struct {
	st  Store
	ids Identities // nil: accounts only

	mu    sync.Mutex
	names map[string]string // guarded by mu
}

const maxNames = 50_000

func (c *nameCache) name(ctx context.Context, id string) string {
	c.mu.Lock()
	n, ok := c.names[id]
	c.mu.Unlock()
	if ok {
		return n
	}
	if u, err := c.st.UserByID(ctx, id); err == nil {
		n = u.Name
	} else if c.ids != nil {
		n, _, _, _ = c.ids.LookupIdentity(ctx, id)
	}
	if n == "" {
		return "" // unknown or a failed lookup: do not remember it
	}
	c.mu.Lock()
	if c.names == nil || len(c.names) >= maxNames {
		c.names = make(map[string]string)
	}
	c.names[id] = n
	c.mu.Unlock()
	return n
}

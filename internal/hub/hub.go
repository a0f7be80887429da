package hub

import (
	"errors"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// Client is a live connection as the hub sees it.
type Client interface {
	// ConnID is unique among live connections of this node.
	ConnID() uint64
	// Identity is the ID of the user, bot or device the connection belongs to.
	Identity() string
	// Send enqueues a framed message without blocking. It returns
	// ws.ErrQueueFull when the client is too slow.
	Send(m *ws.PreparedMessage) error
	// Close starts closing the connection with code; it does not block.
	Close(code int)
}

const numShards = 64

// parallelFanout is the subscriber count above which one publish is split
// across cores: below it, goroutine hand-off costs more than it saves.
const parallelFanout = 2048

type connShard struct {
	mu    sync.RWMutex
	byID  map[string]map[uint64]Client // identity → its connections; guarded by mu
	conns int                          // number of connections in this shard; guarded by mu
}

type subShard struct {
	mu     sync.RWMutex
	topics map[string]map[uint64]Client // topic → subscribers; guarded by mu
}

// Hub is the node's routing table. The zero value is not usable; use New.
type Hub struct {
	seed  maphash.Seed
	conns [numShards]connShard
	subs  [numShards]subShard

	overflows atomic.Uint64 // slow consumers disconnected

	// OnOverflow, if set, is called when a slow consumer is disconnected
	// (for metrics). Set before use.
	OnOverflow func(c Client)
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{seed: maphash.MakeSeed()}
	for i := range h.conns {
		h.conns[i].byID = make(map[string]map[uint64]Client)
		h.subs[i].topics = make(map[string]map[uint64]Client)
	}
	return h
}

func (h *Hub) shardOf(key string) int { return int(maphash.String(h.seed, key) % numShards) }

// Add registers a connection. first reports whether it is its identity's
// only connection on this node (the identity just came online here).
func (h *Hub) Add(c Client) (first bool) {
	s := &h.conns[h.shardOf(c.Identity())]
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.byID[c.Identity()]
	if set == nil {
		set = make(map[uint64]Client, 1)
		s.byID[c.Identity()] = set
	}
	if _, dup := set[c.ConnID()]; !dup {
		set[c.ConnID()] = c
		s.conns++
	}
	return len(set) == 1
}

// Remove unregisters a connection (its subscriptions are the caller's to
// drop with Unsubscribe). last reports whether no connection of its
// identity remains on this node.
func (h *Hub) Remove(c Client) (last bool) {
	s := &h.conns[h.shardOf(c.Identity())]
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.byID[c.Identity()]
	if _, ok := set[c.ConnID()]; !ok {
		return false
	}
	delete(set, c.ConnID())
	s.conns--
	if len(set) == 0 {
		delete(s.byID, c.Identity())
		return true
	}
	return false
}

// Connections returns the live connections of an identity on this node.
func (h *Hub) Connections(identity string) []Client {
	s := &h.conns[h.shardOf(identity)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Client, 0, len(s.byID[identity]))
	for _, c := range s.byID[identity] {
		out = append(out, c)
	}
	return out
}

// Online reports whether the identity has a connection on this node.
func (h *Hub) Online(identity string) bool {
	s := &h.conns[h.shardOf(identity)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byID[identity]) > 0
}

// Len returns the number of connections, summing per-shard counters.
func (h *Hub) Len() int {
	n := 0
	for i := range h.conns {
		s := &h.conns[i]
		s.mu.RLock()
		n += s.conns
		s.mu.RUnlock()
	}
	return n
}

// Subscribe adds c to topic's subscribers. first reports whether c is the
// topic's first subscriber on this node (so a bus subscription is needed).
func (h *Hub) Subscribe(topic string, c Client) (first bool) {
	s := &h.subs[h.shardOf(topic)]
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.topics[topic]
	if set == nil {
		set = make(map[uint64]Client)
		s.topics[topic] = set
	}
	set[c.ConnID()] = c
	return len(set) == 1
}

// Unsubscribe removes c from topic. last reports whether the topic has no
// subscriber left on this node.
func (h *Hub) Unsubscribe(topic string, c Client) (last bool) {
	s := &h.subs[h.shardOf(topic)]
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.topics[topic]
	if !ok {
		return false
	}
	if _, ok := set[c.ConnID()]; !ok {
		return false
	}
	delete(set, c.ConnID())
	if len(set) == 0 {
		delete(s.topics, topic)
		return true
	}
	return false
}

// Subscribers returns how many local connections subscribe to topic.
func (h *Hub) Subscribers(topic string) int {
	s := &h.subs[h.shardOf(topic)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.topics[topic])
}

var clientSlices = sync.Pool{New: func() any { s := make([]Client, 0, 256); return &s }}

// Publish delivers m to every local subscriber of topic and returns how
// many accepted it. The subscriber set is copied under a read lock and the
// lock released before sending, so subscribing never waits on a fan-out.
func (h *Hub) Publish(topic string, m *ws.PreparedMessage) int {
	return h.PublishExcept(topic, m, nil)
}

// PublishExcept is Publish leaving out the subscribers skip reports true
// for (skip may be nil). skip runs under the topic shard's read lock: it
// must not call the hub.
func (h *Hub) PublishExcept(topic string, m *ws.PreparedMessage, skip func(Client) bool) int {
	s := &h.subs[h.shardOf(topic)]
	buf := clientSlices.Get().(*[]Client)
	targets := (*buf)[:0]
	s.mu.RLock()
	for _, c := range s.topics[topic] {
		if skip == nil || !skip(c) {
			targets = append(targets, c)
		}
	}
	s.mu.RUnlock()
	n := h.deliver(targets, m)
	clear(targets)
	*buf = targets[:0]
	clientSlices.Put(buf)
	return n
}

// SendTo delivers m to every local connection of an identity.
func (h *Hub) SendTo(identity string, m *ws.PreparedMessage) int {
	return h.deliver(h.Connections(identity), m)
}

func (h *Hub) deliver(targets []Client, m *ws.PreparedMessage) int {
	workers := runtime.GOMAXPROCS(0)
	if len(targets) < parallelFanout || workers < 2 {
		return h.deliverSerial(targets, m)
	}
	var wg sync.WaitGroup
	var total atomic.Int64
	chunk := (len(targets) + workers - 1) / workers
	for start := 0; start < len(targets); start += chunk {
		part := targets[start:min(start+chunk, len(targets))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(int64(h.deliverSerial(part, m)))
		}()
	}
	wg.Wait()
	return int(total.Load())
}

func (h *Hub) deliverSerial(targets []Client, m *ws.PreparedMessage) int {
	n := 0
	for _, c := range targets {
		switch err := c.Send(m); {
		case err == nil:
			n++
		case errors.Is(err, ws.ErrQueueFull):
			h.overflows.Add(1)
			if h.OnOverflow != nil {
				h.OnOverflow(c)
			}
			c.Close(protocol.CloseSlowConsumer)
		}
	}
	return n
}

// Overflows returns how many slow consumers the hub has disconnected.
func (h *Hub) Overflows() uint64 { return h.overflows.Load() }

// Frame is a server frame encoded once for a fan-out: a WebSocket message
// prepared by the transport. Services publish Frames without importing the
// transport.
type Frame = ws.PreparedMessage

// NewFrame prepares a text frame for a fan-out.
func NewFrame(data []byte) *Frame { return ws.NewPreparedMessage(true, data) }

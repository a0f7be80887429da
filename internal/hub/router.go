package hub

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"

	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/ws"
)

// Router makes the hub cluster-wide: publishing goes through the bus, and
// what arrives from the bus is delivered to this node's subscribers. A node
// subscribes to a topic's bus subject only while it has a local subscriber,
// and to an identity's subject only while it holds one of its connections.
// With bus/local it costs one function call over the plain hub.
type Router struct {
	hub  *Hub
	bus  bus.Bus
	log  *slog.Logger
	seed maphash.Seed

	// locks serialise the local edge (first/last subscriber) with the bus
	// (un)subscription of the same subject, so a quick unsubscribe and
	// resubscribe cannot leave a node deaf.
	locks [numShards]sync.Mutex
	mu    sync.Mutex
	subs  map[string]bus.Subscription // subject → bus subscription; guarded by mu

	// topicHandlers take over delivery of the topics with their prefix
	// (see HandleTopics). Static after setup.
	topicHandlers map[string]TopicHandler
}

// TopicHandler receives what the bus carries for a topic, in place of the
// hub's direct fan-out: it delivers it (Hub.Publish, at once or later) or
// drops it. data is owned by the handler.
type TopicHandler func(topic string, data []byte)

// HandleTopics makes h deliver every topic that starts with prefix (chat
// sequences its conversations' messages this way). Call before any
// subscription.
func (r *Router) HandleTopics(prefix string, h TopicHandler) {
	if r.topicHandlers == nil {
		r.topicHandlers = make(map[string]TopicHandler)
	}
	r.topicHandlers[prefix] = h
}

func (r *Router) topicHandler(topic string) TopicHandler {
	for p, h := range r.topicHandlers {
		if strings.HasPrefix(topic, p) {
			return h
		}
	}
	return nil
}

// NewRouter connects h to b.
func NewRouter(h *Hub, b bus.Bus, log *slog.Logger) *Router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Router{hub: h, bus: b, log: log, seed: maphash.MakeSeed(), subs: make(map[string]bus.Subscription)}
}

// Hub returns the local hub.
func (r *Router) Hub() *Hub { return r.hub }

// Bus returns the cluster bus.
func (r *Router) Bus() bus.Bus { return r.bus }

func topicSubject(topic string) string       { return "t." + topic }
func identitySubject(identity string) string { return "id." + identity }

func (r *Router) lock(subject string) *sync.Mutex {
	return &r.locks[maphash.String(r.seed, subject)%numShards]
}

func (r *Router) busSubscribe(subject string, deliver func([]byte)) {
	sub, err := r.bus.Subscribe(subject, deliver)
	if err != nil {
		r.log.Error("bus subscribe failed; this node will miss the subject", "subject", subject, "err", err)
		return
	}
	r.mu.Lock()
	r.subs[subject] = sub
	r.mu.Unlock()
}

func (r *Router) busUnsubscribe(subject string) {
	r.mu.Lock()
	sub := r.subs[subject]
	delete(r.subs, subject)
	r.mu.Unlock()
	if sub != nil {
		if err := sub.Unsubscribe(); err != nil {
			r.log.Warn("bus unsubscribe", "subject", subject, "err", err)
		}
	}
}

// Add registers a connection (see Hub.Add) and, for its identity's first
// connection on this node, listens for messages addressed to the identity.
func (r *Router) Add(c Client) (first bool) {
	subject := identitySubject(c.Identity())
	l := r.lock(subject)
	l.Lock()
	defer l.Unlock()
	if first = r.hub.Add(c); first {
		identity := c.Identity()
		r.busSubscribe(subject, func(data []byte) { r.hub.SendTo(identity, ws.NewPreparedMessage(true, data)) })
	}
	return first
}

// Remove unregisters a connection (see Hub.Remove).
func (r *Router) Remove(c Client) (last bool) {
	subject := identitySubject(c.Identity())
	l := r.lock(subject)
	l.Lock()
	defer l.Unlock()
	if last = r.hub.Remove(c); last {
		r.busUnsubscribe(subject)
	}
	return last
}

// Subscribe adds c to topic on this node, joining the topic's subject for
// the first local subscriber.
func (r *Router) Subscribe(topic string, c Client) {
	subject := topicSubject(topic)
	l := r.lock(subject)
	l.Lock()
	defer l.Unlock()
	if r.hub.Subscribe(topic, c) {
		if h := r.topicHandler(topic); h != nil {
			r.busSubscribe(subject, func(data []byte) { h(topic, data) })
		} else {
			r.busSubscribe(subject, func(data []byte) { r.hub.Publish(topic, ws.NewPreparedMessage(true, data)) })
		}
	}
}

// Unsubscribe removes c from topic, leaving the subject with the last
// local subscriber.
func (r *Router) Unsubscribe(topic string, c Client) {
	subject := topicSubject(topic)
	l := r.lock(subject)
	l.Lock()
	defer l.Unlock()
	if r.hub.Unsubscribe(topic, c) {
		r.busUnsubscribe(subject)
	}
}

// Publish sends a frame (JSON) to every subscriber of topic on every node.
func (r *Router) Publish(ctx context.Context, topic string, frame []byte) error {
	return r.bus.Publish(ctx, topicSubject(topic), frame)
}

// SendTo sends a frame to every connection of identity on every node.
func (r *Router) SendTo(ctx context.Context, identity string, frame []byte) error {
	return r.bus.Publish(ctx, identitySubject(identity), frame)
}

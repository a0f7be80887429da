// Package nats is the bus of a cluster: core NATS subjects, so that a
// message published on one node reaches the subscribers of every node.
//
// A node's own subscribers get its messages directly, in the publisher's
// goroutine, and the NATS server never echoes them back (NoEcho): a node
// keeps serving its own connections while NATS is unreachable, and starts
// without it. What other nodes published during an outage is lost to this
// node's subscribers, and so is what NATS drops for a subscriber that falls
// behind (a slow consumer); OnMissed tells the owner of the subscriptions
// when either happened, so it can re-read what it missed from the store.
package nats

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/bus"
)

// Reconnect backoff: doubling from reconnectMin up to reconnectMax, with
// jitter, so a node finds a restarted server within about a second and a
// fleet does not reconnect in step.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 2 * time.Second
)

// Bus is a NATS connection used as the cluster bus.
type Bus struct {
	nc     *nats.Conn
	prefix string
	log    *slog.Logger
	closed chan struct{} // closed by the client when the connection is gone

	mu       sync.RWMutex
	local    map[string]map[*subscription]struct{} // subject → this node's subscriptions; guarded by mu
	onMissed []func()                              // guarded by mu

	downSince atomic.Int64 // unix ns the connection was lost (or first tried); 0 while connected
	m         metrics

	// Each subscription's client-side buffer: beyond it NATS drops (a slow
	// consumer). Tests lower it.
	pendingMsgs, pendingBytes int
}

type subscription struct {
	b       *Bus
	subject string
	h       bus.Handler
	sub     *nats.Subscription
	mu      sync.Mutex // serialises deliveries from NATS and from this node
	stopped bool       // guarded by mu
}

type metrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	dropped    *prometheus.CounterVec
}

var _ bus.Bus = (*Bus)(nil)

// Open starts connecting to the NATS server(s) at url and returns at once:
// while the server is unreachable the node works alone (its publishes reach
// its own subscribers; those for other nodes are buffered by the client up
// to its limit, then counted as dropped) and keeps trying with a bounded
// backoff. Subjects are namespaced under prefix (e.g. "unhidra"), so several
// deployments can share a server. extra are further connection options:
// authentication (credentials, NKey, user and password) and TLS.
func Open(url, prefix string, log *slog.Logger, extra ...nats.Option) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := bus.ValidSubject(prefix); err != nil {
		return nil, fmt.Errorf("bus prefix %q: %w", prefix, err)
	}
	b := &Bus{prefix: prefix, log: log, closed: make(chan struct{}), local: make(map[string]map[*subscription]struct{}),
		pendingMsgs: 1 << 16, pendingBytes: 64 << 20}
	b.m = metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "unhidra", Subsystem: "bus", Name: "connected",
			Help: "1 while the node is connected to NATS, 0 while it is not."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "bus", Name: "reconnects_total",
			Help: "Times the connection to NATS came back after being lost."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "unhidra", Subsystem: "bus", Name: "dropped_total",
			Help: "Bus messages lost: publishes NATS refused (publish_refused) and deliveries NATS dropped for a slow subscriber (slow_consumer)."},
			[]string{"reason"}),
	}
	for _, reason := range []string{"publish_refused", "slow_consumer"} {
		b.m.dropped.WithLabelValues(reason) // exported at 0, for dashboards and alerts
	}
	b.downSince.Store(time.Now().UnixNano())
	opts := append([]nats.Option{
		nats.Name("unhidra"),
		nats.NoEcho(),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := reconnectMin << min(attempts, 5)
			d = min(d, reconnectMax)
			return d/2 + rand.N(d/2+1)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
		nats.ConnectHandler(func(c *nats.Conn) { b.up(c, false) }),
		nats.ReconnectHandler(func(c *nats.Conn) { b.up(c, true) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.downSince.CompareAndSwap(0, time.Now().UnixNano()) {
				b.m.connected.Set(0)
				b.log.Info("bus: lost the connection to NATS; serving this node alone until it is back", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			b.log.Warn("bus: NATS error", "subject", subjectOf(sub), "err", err)
			if err == nats.ErrSlowConsumer {
				// NATS reports it once per episode of drops, whatever
				// their number: what they carried is re-read.
				b.m.dropped.WithLabelValues("slow_consumer").Inc()
				b.missed()
			}
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	b.nc = nc
	if nc.IsConnected() {
		if b.downSince.Swap(0) != 0 {
			b.m.connected.Set(1)
		}
	} else {
		b.log.Info("bus: NATS not reachable yet; serving this node alone until it is", "url", nc.Opts.Url)
	}
	return b, nil
}

// up runs when the connection is (re)established: the subscriptions are
// back on the server once the flush returns, so what the OnMissed
// callbacks re-read from the store meets what arrives live.
func (b *Bus) up(c *nats.Conn, reconnect bool) {
	since := b.downSince.Swap(0)
	if since == 0 {
		return // already up: Open saw the first connection itself
	}
	b.m.connected.Set(1)
	_ = c.FlushTimeout(5 * time.Second)
	outage := time.Duration(time.Now().UnixNano() - since).Round(time.Millisecond)
	if reconnect {
		b.m.reconnects.Inc()
		b.log.Warn("bus: NATS outage over; re-syncing subscriptions from the store", "outage", outage, "server", c.ConnectedUrlRedacted())
	} else {
		b.log.Info("bus: connected to NATS", "after", outage, "server", c.ConnectedUrlRedacted())
	}
	b.missed()
}

// missed calls the OnMissed callbacks.
func (b *Bus) missed() {
	b.mu.RLock()
	fs := append([]func(){}, b.onMissed...)
	b.mu.RUnlock()
	for _, f := range fs {
		f()
	}
}

// OnMissed registers f, called (on the client's callback goroutine; it
// must not block) each time this node may have missed messages: the
// connection came back after an outage (or first connected after Open
// found the server unreachable), or NATS dropped messages for one of its
// subscriptions that fell behind.
func (b *Bus) OnMissed(f func()) {
	b.mu.Lock()
	b.onMissed = append(b.onMissed, f)
	b.mu.Unlock()
}

// Connected reports whether the node is connected to NATS now.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Collectors returns the bus's Prometheus collectors.
func (b *Bus) Collectors() []prometheus.Collector {
	return []prometheus.Collector{b.m.connected, b.m.reconnects, b.m.dropped}
}

func subjectOf(s *nats.Subscription) string {
	if s == nil {
		return ""
	}
	return s.Subject
}

// Publish sends data to subject on every node: to this node's subscribers
// before it returns, in the caller's goroutine, and to the others through
// NATS. An error means the other nodes will not get it.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := bus.ValidSubject(subject); err != nil {
		return err
	}
	// NATS first: the message leaves in the order callers arrive here,
	// not delayed behind this node's handlers (a sealed bus numbers its
	// messages just before this call).
	var err error
	if perr := b.nc.Publish(b.prefix+"."+subject, data); perr != nil {
		b.m.dropped.WithLabelValues("publish_refused").Inc()
		err = fmt.Errorf("bus publish %s: %w", subject, perr)
	}
	b.mu.RLock()
	var targets []*subscription
	for s := range b.local[subject] {
		targets = append(targets, s)
	}
	b.mu.RUnlock()
	for _, s := range targets {
		s.deliver(data)
	}
	return err
}

func (s *subscription) deliver(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.h(data)
	}
}

// Subscribe calls h for each message on subject: one at a time, those of
// one publisher in order.
func (b *Bus) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidSubject(subject); err != nil {
		return nil, err
	}
	s := &subscription{b: b, subject: subject, h: h}
	sub, err := b.nc.Subscribe(b.prefix+"."+subject, func(m *nats.Msg) { s.deliver(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bus subscribe %s: %w", subject, err)
	}
	// Generous pending limits: a burst to one busy conversation must not
	// be dropped for a brief stall; the error handler counts it if it is.
	sub.SetPendingLimits(b.pendingMsgs, b.pendingBytes)
	s.sub = sub
	b.mu.Lock()
	if b.local[subject] == nil {
		b.local[subject] = make(map[*subscription]struct{})
	}
	b.local[subject][s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// Unsubscribe stops deliveries; none runs after it returns.
func (s *subscription) Unsubscribe() error {
	s.b.mu.Lock()
	delete(s.b.local[s.subject], s)
	if len(s.b.local[s.subject]) == 0 {
		delete(s.b.local, s.subject)
	}
	s.b.mu.Unlock()
	err := s.sub.Unsubscribe()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	return err
}

// Flush waits until the server has processed everything published so far
// (tests and ordered hand-offs use it).
func (b *Bus) Flush(ctx context.Context) error { return b.nc.FlushWithContext(ctx) }

// Close drains subscriptions (handlers finish what was delivered) and
// closes the connection, waiting for both, at most 10 s.
func (b *Bus) Close() error {
	err := b.nc.Drain()
	if err != nil {
		b.nc.Close()
	}
	select {
	case <-b.closed:
	case <-time.After(10 * time.Second):
		b.nc.Close()
		<-b.closed
	}
	return err
}

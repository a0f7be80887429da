// Package nats is the bus of a cluster: core NATS subjects, so that a
// message published on one node reaches the subscribers of every node.
package nats

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unhidra/unhidra/internal/bus"
)

// Bus is a NATS connection used as the cluster bus.
type Bus struct {
	nc     *nats.Conn
	prefix string
	closed chan struct{} // closed by the client when the connection is gone
}

var _ bus.Bus = (*Bus)(nil)

// Open connects to the NATS server(s) at url. Subjects are namespaced
// under prefix (e.g. "unhidra"), so several deployments can share a server.
// The connection reconnects by itself; while it is down, publishes are
// buffered by the client library up to its limit.
func Open(url, prefix string, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := bus.ValidSubject(prefix); err != nil {
		return nil, fmt.Errorf("bus prefix %q: %w", prefix, err)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(url,
		nats.Name("unhidra"),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("bus: reconnected to NATS", "server", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			// A slow subscriber on this node: NATS dropped messages for it.
			log.Error("bus: NATS error", "subject", subjectOf(sub), "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return &Bus{nc: nc, prefix: prefix, closed: closed}, nil
}

func subjectOf(s *nats.Subscription) string {
	if s == nil {
		return ""
	}
	return s.Subject
}

// Publish sends data to subject on every node.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := bus.ValidSubject(subject); err != nil {
		return err
	}
	if err := b.nc.Publish(b.prefix+"."+subject, data); err != nil {
		return fmt.Errorf("bus publish %s: %w", subject, err)
	}
	return nil
}

// Subscribe calls h for each message on subject, on a goroutine the NATS
// client owns for this subscription (in order per publisher).
func (b *Bus) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidSubject(subject); err != nil {
		return nil, err
	}
	sub, err := b.nc.Subscribe(b.prefix+"."+subject, func(m *nats.Msg) { h(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bus subscribe %s: %w", subject, err)
	}
	// Generous pending limits: a burst to one busy conversation must not
	// be dropped for a brief stall; the error handler reports if it is.
	sub.SetPendingLimits(1<<16, 64<<20)
	return sub, nil
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

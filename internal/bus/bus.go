// Package bus carries messages between the nodes of a cluster. One node
// alone uses bus/local, an in-process implementation; several nodes share a
// NATS server through bus/nats. Messages are fire-and-forget: what must
// survive is in the database before it is published.
package bus

import (
	"context"
	"errors"
	"strings"
)

// Handler receives a message. It runs on the bus's delivery goroutine for
// that subscription: messages of one subscription arrive one at a time, in
// the order one publisher sent them. data is owned by the handler.
type Handler func(data []byte)

// Bus publishes to subjects and subscribes to them.
type Bus interface {
	// Publish sends data to every subscriber of subject on every node,
	// this one included. It does not wait for delivery.
	Publish(ctx context.Context, subject string, data []byte) error
	// Subscribe calls h for each message on subject until the returned
	// Subscription is cancelled.
	Subscribe(subject string, h Handler) (Subscription, error)
	// Close releases the bus. Subscriptions end.
	Close() error
}

// Subscription is an active subscription.
type Subscription interface {
	Unsubscribe() error
}

// MaxSubjectLen bounds subject names.
const MaxSubjectLen = 256

// ErrBadSubject is returned for subjects that are empty, too long, or have
// characters NATS gives a meaning to (spaces, '*', '>') or empty tokens.
var ErrBadSubject = errors.New("bus: bad subject")

// ValidSubject checks a subject: dot-separated, non-empty tokens without
// whitespace or wildcards.
func ValidSubject(s string) error {
	if s == "" || len(s) > MaxSubjectLen || strings.ContainsAny(s, " \t\r\n*>") {
		return ErrBadSubject
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return ErrBadSubject
		}
	}
	return nil
}

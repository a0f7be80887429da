package bus

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sealed authenticates every message of a cluster bus end to end with the
// deployment's cluster key: Publish seals (AES-256-GCM over the payload,
// bound to the subject), subscribers open and verify, and anything not
// sealed by a node holding the keyring is dropped and counted. Whoever can
// publish on the NATS server — another deployment sharing it, a leaked
// client credential — can no longer speak for this cluster.
//
// Each node seals with a random sender ID and a counter; a subscription
// drops a message whose counter it has seen from that sender before, or
// that is more than ReplayWindow below the highest seen (replays), one of
// its own that it is not publishing at that moment (a replay too), and
// messages older than MaxAge (clock skew included).
type Sealed struct {
	inner Bus
	keys  *ClusterKeys
	log   *slog.Logger
	now   func() time.Time

	sender [8]byte
	seq    atomic.Uint64 // last sequence number given to a message
	// own holds the numbers of this node's messages being published now.
	// Its own messages reach it only through the inner bus's local
	// delivery, which runs inside Publish (NATS does not echo them back):
	// one that arrives at any other time is a replay by whoever can
	// publish on NATS, and is dropped.
	ownMu sync.Mutex
	own   map[uint64]struct{}

	aeads   map[string]cipher.AEAD
	dropped *prometheus.CounterVec
	lastLog atomic.Int64 // unix nanos of the last drop warning
}

// MaxAge bounds how old (or how far in the future, for skewed clocks) a
// sealed message may be.
const MaxAge = 5 * time.Minute

// Drop reasons, the label of unhidra_bus_rejected_total.
const (
	DropUnsealed = "unsealed"    // not in the sealed format at all
	DropKey      = "unknown_key" // sealed with a key this node does not hold
	DropForged   = "forged"      // fails authentication (tampered, other subject)
	DropStale    = "stale"       // outside MaxAge
	DropReplay   = "replay"      // sender counter not increasing
)

var _ Bus = (*Sealed)(nil)

const sealVersion = 1

// NewSealed wraps inner. keys must hold at least one key.
func NewSealed(inner Bus, keys *ClusterKeys, log *slog.Logger) (*Sealed, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if keys == nil || len(keys.Keys) == 0 {
		return nil, fmt.Errorf("sealed bus: no cluster key")
	}
	s := &Sealed{inner: inner, keys: keys, log: log, now: time.Now, aeads: map[string]cipher.AEAD{}, own: map[uint64]struct{}{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_bus_rejected_total",
			Help: "Bus messages dropped because they were not sealed by this cluster's key (unsealed, unknown_key, forged, stale, replay).",
		}, []string{"reason"})}
	for _, r := range []string{DropUnsealed, DropKey, DropForged, DropStale, DropReplay} {
		s.dropped.WithLabelValues(r)
	}
	for _, k := range keys.Keys {
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("cluster key %s: %w", k.ID, err)
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("cluster key %s: %w", k.ID, err)
		}
		s.aeads[k.ID] = a
	}
	if _, err := rand.Read(s.sender[:]); err != nil {
		return nil, fmt.Errorf("sealed bus: %w", err)
	}
	return s, nil
}

// Collectors returns the rejection counter and the inner bus's
// collectors, for the node's metrics registry.
func (s *Sealed) Collectors() []prometheus.Collector {
	out := []prometheus.Collector{s.dropped}
	if ic, ok := s.inner.(interface{ Collectors() []prometheus.Collector }); ok {
		out = append(out, ic.Collectors()...)
	}
	return out
}

// OnMissed passes f to the inner bus, if it can miss messages (bus/nats).
func (s *Sealed) OnMissed(f func()) {
	if mb, ok := s.inner.(interface{ OnMissed(func()) }); ok {
		mb.OnMissed(f)
	}
}

// Connected reports whether the inner bus is connected (always, for a bus
// that cannot lose its connection).
func (s *Sealed) Connected() bool {
	if cb, ok := s.inner.(interface{ Connected() bool }); ok {
		return cb.Connected()
	}
	return true
}

// Inner returns the wrapped bus.
func (s *Sealed) Inner() Bus { return s.inner }

// Publish seals data for subject and sends it.
func (s *Sealed) Publish(ctx context.Context, subject string, data []byte) error {
	if err := ValidSubject(subject); err != nil {
		return err
	}
	now := s.now()
	k := s.keys.sealing(now)
	aead := s.aeads[k.ID]
	// No lock is held while the inner bus sends: it delivers to this
	// node's subscribers in this goroutine, and their handlers publish
	// too (a lock here deadlocked two such handlers). Concurrent
	// publishers may therefore hand their numbers to NATS slightly out of
	// order; receivers accept that within ReplayWindow.
	seq := s.seq.Add(1)
	// header: version, kid length, kid, nonce; then the sealed
	// (sender, seq, time, data).
	hdr := 2 + len(k.ID) + aead.NonceSize()
	out := make([]byte, hdr, hdr+24+len(data)+aead.Overhead())
	out[0], out[1] = sealVersion, byte(len(k.ID))
	copy(out[2:], k.ID)
	nonce := out[2+len(k.ID) : hdr]
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("bus seal: %w", err)
	}
	plain := make([]byte, 24, 24+len(data))
	copy(plain, s.sender[:])
	binary.BigEndian.PutUint64(plain[8:], seq)
	binary.BigEndian.PutUint64(plain[16:], uint64(now.UnixNano()))
	plain = append(plain, data...)
	out = aead.Seal(out, nonce, plain, aad(subject, k.ID))
	s.ownMu.Lock()
	s.own[seq] = struct{}{}
	s.ownMu.Unlock()
	defer func() {
		s.ownMu.Lock()
		delete(s.own, seq)
		s.ownMu.Unlock()
	}()
	return s.inner.Publish(ctx, subject, out)
}

// publishing reports whether this node is publishing its message seq now.
func (s *Sealed) publishing(seq uint64) bool {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	_, ok := s.own[seq]
	return ok
}

func aad(subject, kid string) []byte {
	return []byte("unhidra-bus\x00" + subject + "\x00" + kid)
}

// Subscribe calls h with the opened payload of each authentic message on
// subject; others are dropped and counted.
func (s *Sealed) Subscribe(subject string, h Handler) (Subscription, error) {
	if err := ValidSubject(subject); err != nil {
		return nil, err
	}
	// The inner bus calls the handler one message at a time, so the
	// replay state needs no lock.
	last := map[[8]byte]senderState{}
	var pruned time.Time
	return s.inner.Subscribe(subject, func(msg []byte) {
		now := s.now()
		data, sender, seq, reason := s.open(subject, msg, now)
		// This node's own messages reach it only through the inner bus's
		// local delivery, in the order the publishing goroutines get
		// there, not in number order: they are checked against what it
		// is publishing now (Sealed.own), not against the window.
		switch {
		case reason != "":
		case sender == s.sender:
			if !s.publishing(seq) {
				reason = DropReplay
			}
		default:
			st := last[sender]
			if st.accept(seq) {
				st.seen = now
				last[sender] = st
			} else {
				reason = DropReplay
			}
		}
		if reason != "" {
			s.drop(subject, reason, now)
			return
		}
		// Senders silent for longer than MaxAge are forgotten: anything
		// they sent before is stale by now.
		if now.Sub(pruned) > MaxAge {
			pruned = now
			for id, st := range last {
				if now.Sub(st.seen) > 2*MaxAge {
					delete(last, id)
				}
			}
		}
		h(data)
	})
}

// ReplayWindow is how far behind the highest sequence number seen from a
// sender a message may arrive and still be accepted (once): concurrent
// publishers on one node send their numbers slightly out of order.
const ReplayWindow = 1024

type senderState struct {
	max    uint64                    // highest sequence number accepted
	window [ReplayWindow / 64]uint64 // bit i: max-i accepted
	seen   time.Time                 // when the sender was last heard
}

// accept records seq and reports whether it is new: above the highest
// seen, or within the window below it and not seen before.
func (st *senderState) accept(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > st.max {
		shift := seq - st.max
		st.shiftWindow(shift)
		st.max = seq
		st.window[0] |= 1
		return true
	}
	d := st.max - seq
	if d >= ReplayWindow {
		return false
	}
	w, bit := d/64, uint64(1)<<(d%64)
	if st.window[w]&bit != 0 {
		return false
	}
	st.window[w] |= bit
	return true
}

// shiftWindow moves the window up by n positions (bit i becomes bit i+n).
func (st *senderState) shiftWindow(n uint64) {
	if n >= ReplayWindow {
		st.window = [ReplayWindow / 64]uint64{}
		return
	}
	words, bits := int(n/64), n%64
	for i := len(st.window) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = st.window[j] << bits
			if bits > 0 && j > 0 {
				v |= st.window[j-1] >> (64 - bits)
			}
		}
		st.window[i] = v
	}
}

// open verifies a sealed message; reason is "" when it is authentic.
func (s *Sealed) open(subject string, msg []byte, now time.Time) (data []byte, sender [8]byte, seq uint64, reason string) {
	if len(msg) < 2 || msg[0] != sealVersion || len(msg) < 2+int(msg[1]) {
		return nil, sender, 0, DropUnsealed
	}
	kid := string(msg[2 : 2+int(msg[1])])
	aead, ok := s.aeads[kid]
	if !ok {
		return nil, sender, 0, DropKey
	}
	rest := msg[2+len(kid):]
	if len(rest) < aead.NonceSize()+aead.Overhead()+24 {
		return nil, sender, 0, DropForged
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], aad(subject, kid))
	if err != nil {
		return nil, sender, 0, DropForged
	}
	copy(sender[:], plain)
	seq = binary.BigEndian.Uint64(plain[8:])
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(plain[16:])))
	if d := now.Sub(sent); d > MaxAge || d < -MaxAge {
		return nil, sender, 0, DropStale
	}
	return plain[24:], sender, seq, ""
}

func (s *Sealed) drop(subject, reason string, now time.Time) {
	s.dropped.WithLabelValues(reason).Inc()
	// One warning per 10 s at most: a flood must not flood the log too.
	last := s.lastLog.Load()
	if now.UnixNano()-last > int64(10*time.Second) && s.lastLog.CompareAndSwap(last, now.UnixNano()) {
		s.log.Warn("bus: dropped a message not sealed by this cluster (see unhidra_bus_rejected_total)",
			"subject", subject, "reason", reason)
	}
}

// Close closes the inner bus.
func (s *Sealed) Close() error { return s.inner.Close() }

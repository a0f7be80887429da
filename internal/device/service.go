package device

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Device states.
const (
	StateOnline  = "online"  // connected, heartbeats on time
	StateStale   = "stale"   // connected, but heartbeats overdue
	StateOffline = "offline" // not connected
)

// Config configures a Service. Zero fields get the documented defaults.
type Config struct {
	// HeartbeatInterval is what devices are told to use. Default 60 s.
	HeartbeatInterval time.Duration
	// StaleAfter is how long after the last heartbeat a connected device
	// turns stale. Default 1.5 × HeartbeatInterval.
	StaleAfter time.Duration
	// FlushInterval is how often batched writes are committed. Default 2 s.
	FlushInterval time.Duration
	// SweepInterval is how often overdue devices turn stale, commands
	// expire and the free-heap series is pruned. Default 5 s.
	SweepInterval time.Duration
	// KeyCheckInterval is how often the store is asked for keys revoked or
	// replaced by another process (the admin CLI writing the database of a
	// running server). Default 500 ms: a revocation must end the device's
	// sessions within a second, and the query is one indexed range scan.
	KeyCheckInterval time.Duration
	// KeepTelemetry bounds stored telemetry per device. Default 1000.
	KeepTelemetry int
	// MaxPendingTelemetry bounds telemetry waiting for a flush; beyond it
	// the newest is dropped and counted. Default 10000.
	MaxPendingTelemetry int
	// MinuteRetention and HourRetention bound the free-heap series.
	// Defaults 48 h and 30 days.
	MinuteRetention, HourRetention time.Duration
	// MaxQueuedCommands bounds queued commands per device. Default 100,
	// at most 1000.
	MaxQueuedCommands int
	// CommandWindow bounds the commands sent to a connected device and not
	// yet answered (acked, failed or expired); it is told to the device in
	// its welcome. Default 8.
	CommandWindow int
	// DefaultCommandTTL and MaxCommandTTL bound command expiry. Defaults
	// 1 h and 7 days.
	DefaultCommandTTL, MaxCommandTTL time.Duration
	// MaxPerOwner bounds devices per account. Default DefaultMaxPerOwner.
	MaxPerOwner int
	// AnalyzeInterval is how often connected devices' heap trends are
	// checked for leaks (with SetInferrer). Default 15 minutes.
	AnalyzeInterval time.Duration
	// AlertHorizon: a leak that would exhaust memory within it alerts the
	// owner. Default 72 h.
	AlertHorizon time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 60 * time.Second
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = c.HeartbeatInterval * 3 / 2
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 2 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
	if c.KeyCheckInterval <= 0 {
		c.KeyCheckInterval = 500 * time.Millisecond
	}
	if c.KeepTelemetry <= 0 {
		c.KeepTelemetry = 1000
	}
	if c.MaxPendingTelemetry <= 0 {
		c.MaxPendingTelemetry = 10000
	}
	if c.MinuteRetention <= 0 {
		c.MinuteRetention = 48 * time.Hour
	}
	if c.HourRetention <= 0 {
		c.HourRetention = 30 * 24 * time.Hour
	}
	if c.MaxQueuedCommands <= 0 {
		c.MaxQueuedCommands = 100
	}
	c.MaxQueuedCommands = min(c.MaxQueuedCommands, commandScan)
	if c.CommandWindow <= 0 {
		c.CommandWindow = 8
	}
	if c.DefaultCommandTTL <= 0 {
		c.DefaultCommandTTL = time.Hour
	}
	if c.MaxCommandTTL <= 0 {
		c.MaxCommandTTL = 7 * 24 * time.Hour
	}
	if c.AnalyzeInterval <= 0 {
		c.AnalyzeInterval = 15 * time.Minute
	}
	if c.AlertHorizon <= 0 {
		c.AlertHorizon = 72 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Conn is a device's connection as the service uses it (the transport's
// connection, *gateway.Client, in the server).
type Conn interface {
	SendJSON(v any) error
	Close(code int)
}

// liveDevice is the in-memory state of a connected device.
type liveDevice struct {
	conn        Conn
	owner, name string
	connectedAt time.Time
	lastBeat    time.Time // last heartbeat, or the connect time before the first
	state       string
	boot        bootState
	freeHeap    int64

	sendMu      sync.Mutex          // serialises deliveries to conn (see pump)
	outstanding map[string]struct{} // guarded by Service.mu: commands sent on conn, not yet answered; nil until the first
}

type heapKey struct {
	device string
	res    int
	start  int64
}

// pending is what the next flush writes.
type pending struct {
	health    map[string]store.DeviceHealth
	heap      map[heapKey]*store.HeapBucket
	telemetry []unhidra.Telemetry
	events    []unhidra.AuditEvent
}

func newPending() pending {
	return pending{health: map[string]store.DeviceHealth{}, heap: map[heapKey]*store.HeapBucket{}}
}

// Service runs devices' server side. Create it with NewService, pass
// Authenticate to the gateway, call Attach, then Run.
type Service struct {
	cfg   Config
	store Store
	reg   *Registry
	log   *slog.Logger

	// Static after Attach.
	closeIdentity func(identity string, code int)
	notify        func(owner, deviceID string, frame any)

	mu   sync.Mutex
	live map[string]*liveDevice // guarded by mu; connected devices by ID
	// boots remembers, per device that disconnected from this node, what
	// its last heartbeat said, so a reboot across a fast reconnect is seen
	// whatever has been flushed; guarded by mu, pruned by Sweep.
	boots map[string]bootState
	pend  pending // guarded by mu
	// lastCommandAt orders commands created in the same millisecond; guarded by mu.
	lastCommandAt time.Time

	// Owned by Sweep.
	lastPrune, lastChangeCheck time.Time

	droppedTelemetry atomic.Uint64
	flushFailures    atomic.Uint64

	convs    Conversations  // static after Attach; nil: no channel follows devices
	analysis *analysisState // nil without ML; static after SetInferrer
	follow   followerCache
}

// NewService returns a service on st. It sends nothing until Attach.
func NewService(st Store, cfg Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	s := &Service{cfg: cfg, store: st, log: log, live: map[string]*liveDevice{}, boots: map[string]bootState{}, pend: newPending(),
		reg: &Registry{Store: st, MaxPerOwner: cfg.MaxPerOwner, Log: log}}
	s.notify = func(string, string, any) {}
	s.lastChangeCheck = cfg.Now()
	return s
}

// Registry returns the service's registry.
func (s *Service) Registry() *Registry { return s.reg }

// Conversations is what the service needs of messaging (*chat.Service):
// channels follow devices, so their members hear the device's state
// changes and alerts.
type Conversations interface {
	// PostEvent sends an event frame to a conversation's live connections
	// on every node.
	PostEvent(ctx context.Context, conversationID string, frame []byte) error
	// RequireMember returns nil when member belongs to the conversation,
	// and an error with code protocol.ErrNotFound when it does not.
	RequireMember(ctx context.Context, conversationID, member string) error
}

// Links are how the service reaches connections and conversations; the
// server's composition root provides them (see devicews.Attach).
type Links struct {
	// Router carries frames to owners and device topics on every node.
	Router *hub.Router
	// CloseIdentity closes a device's connections on every node; nil
	// closes the connection this node knows.
	CloseIdentity func(identity string, code int)
	// Conversations delivers to following channels; nil: no channel
	// follows devices.
	Conversations Conversations
}

// Attach connects the service to the cluster: owners' live frames go
// through l.Router, following channels' through l.Conversations. ctx bounds
// the work; frames of the final disconnects are sent after it ends, until
// the bus closes. Call before serving.
func (s *Service) Attach(ctx context.Context, l Links) {
	s.closeIdentity = l.CloseIdentity
	s.convs = l.Conversations
	r := l.Router
	nctx := context.WithoutCancel(ctx)
	s.notify = func(owner, deviceID string, frame any) {
		data := protocol.Marshal(frame)
		if err := r.SendTo(nctx, owner, data); err != nil {
			s.log.Warn("device frame to owner lost", "device", deviceID, "err", err)
		}
		if err := r.Publish(nctx, Topic(deviceID), data); err != nil {
			s.log.Warn("device frame to topic lost", "device", deviceID, "err", err)
		}
		if s.convs == nil {
			return
		}
		// Channels following the device get its state changes and alerts.
		for _, ch := range s.followers(nctx, deviceID) {
			if cf, ok := channelFrame(frame, ch); ok {
				if err := s.convs.PostEvent(nctx, ch, cf); err != nil {
					s.log.Warn("device frame to channel lost", "device", deviceID, "channel", ch, "err", err)
				}
			}
		}
	}
}

// CommandWindow is how many commands a device may have unanswered; the
// welcome frame tells devices.
func (s *Service) CommandWindow() int { return s.cfg.CommandWindow }

// Connect records a new connection of a device (see connected).
func (s *Service) Connect(ctx context.Context, c Conn, id, owner, name, ip string) {
	s.connected(ctx, c, id, owner, name, ip)
}

// Disconnect records that a device's connection went away.
func (s *Service) Disconnect(c Conn, id string) { s.disconnected(c, id) }

// Topic is the hub topic carrying a device's state and command frames
// (besides its owner's connections, which always receive them).
func Topic(deviceID string) string { return "device:" + deviceID }

// Run flushes and sweeps until ctx ends, then flushes once more. It
// blocks; the caller owns it.
func (s *Service) Run(ctx context.Context) {
	flush := time.NewTicker(s.cfg.FlushInterval)
	defer flush.Stop()
	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	analyze := time.NewTicker(s.cfg.AnalyzeInterval)
	defer analyze.Stop()
	keys := time.NewTicker(s.cfg.KeyCheckInterval)
	defer keys.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := s.Flush(fctx); err != nil {
				s.log.Error("final device flush failed", "err", err)
			}
			return
		case <-flush.C:
			if err := s.Flush(ctx); err != nil {
				s.log.Error("device flush failed", "err", err)
			}
		case <-sweep.C:
			if err := s.Sweep(ctx); err != nil {
				s.log.Error("device sweep failed", "err", err)
			}
		case <-analyze.C:
			s.CheckLeaks(ctx)
		case <-keys.C:
			if err := s.CheckKeyChanges(ctx); err != nil {
				s.log.Error("device key check failed", "err", err)
			}
		}
	}
}

// Flush writes the pending batch in one transaction. If the write fails,
// the batch is put back (under what arrived meanwhile, within the pending
// bounds) for the next flush, and the failure is counted.
func (s *Service) Flush(ctx context.Context) error {
	s.mu.Lock()
	p := s.pend
	s.pend = newPending()
	s.mu.Unlock()
	b := &store.DeviceBatch{Telemetry: p.telemetry, Events: p.events, KeepTelemetry: s.cfg.KeepTelemetry}
	for _, h := range p.health {
		b.Health = append(b.Health, h)
	}
	for _, h := range p.heap {
		b.Heap = append(b.Heap, *h)
	}
	if err := s.store.WriteDeviceBatch(ctx, b); err != nil {
		s.flushFailures.Add(1)
		s.requeue(p)
		return err
	}
	return nil
}

// requeue merges a batch that failed to be written back into pending:
// newer health wins, heap buckets add up, older telemetry and events go
// first. Telemetry and events beyond MaxPendingTelemetry are dropped, so an
// unreachable store cannot grow memory without bound.
func (s *Service) requeue(p pending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, h := range p.health {
		if _, newer := s.pend.health[id]; !newer {
			s.pend.health[id] = h
		}
	}
	for k, b := range p.heap {
		if cur := s.pend.heap[k]; cur != nil {
			cur.Min, cur.Max = min(cur.Min, b.Min), max(cur.Max, b.Max)
			cur.Sum += b.Sum
			cur.Count += b.Count
		} else {
			s.pend.heap[k] = b
		}
	}
	limit := s.cfg.MaxPendingTelemetry
	if n := len(p.telemetry) + len(s.pend.telemetry) - limit; n > 0 {
		s.droppedTelemetry.Add(uint64(min(n, len(p.telemetry))))
		p.telemetry = p.telemetry[min(n, len(p.telemetry)):]
	}
	s.pend.telemetry = append(p.telemetry, s.pend.telemetry...)
	if n := len(p.events) + len(s.pend.events) - limit; n > 0 {
		p.events = p.events[min(n, len(p.events)):]
	}
	s.pend.events = append(p.events, s.pend.events...)
}

// Sweep turns overdue devices stale, expires commands and prunes the
// free-heap series.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.cfg.Now()
	var frames []ownerFrame
	s.mu.Lock()
	for id, d := range s.live {
		if d.state == StateOnline && now.Sub(d.lastBeat) > s.cfg.StaleAfter {
			frames = append(frames, s.setState(id, d, StateStale, "heartbeat_overdue", now))
		}
	}
	s.mu.Unlock()
	s.send(frames)

	expired, err := s.store.ExpireCommands(ctx, now)
	if err != nil {
		return err
	}
	refill := map[string]bool{}
	for _, c := range expired {
		s.commandStatus(ctx, c)
		if s.answered(c.DeviceID, c.ID) {
			refill[c.DeviceID] = true
		}
	}
	for id := range refill {
		s.pump(ctx, id, false)
	}

	s.follow.prune(time.Now())
	if now.Sub(s.lastPrune) > 10*time.Minute {
		s.lastPrune = now
		s.mu.Lock()
		for id, b := range s.boots {
			if now.Sub(b.at) > s.cfg.MinuteRetention {
				delete(s.boots, id)
			}
		}
		s.mu.Unlock()
		if _, err := s.store.DeleteHeapBefore(ctx, store.HeapMinute, now.Add(-s.cfg.MinuteRetention)); err != nil {
			return err
		}
		if _, err := s.store.DeleteHeapBefore(ctx, store.HeapHour, now.Add(-s.cfg.HourRetention)); err != nil {
			return err
		}
	}
	return nil
}

// CheckKeyChanges closes the live connections of devices whose key was
// revoked or replaced since the last check by another process (the admin
// CLI); changes made through this server's API close them at once.
func (s *Service) CheckKeyChanges(ctx context.Context) error {
	now := s.cfg.Now()
	// Overlap the window by a second so a change committed while we
	// looked is seen next time; acting twice is harmless.
	since := s.lastChangeCheck.Add(-time.Second)
	s.lastChangeCheck = now
	s.mu.Lock()
	idle := len(s.live) == 0
	s.mu.Unlock()
	if idle {
		// Nothing to close; a later handshake checks its key itself, and one
		// that checked it just before a change is live within the second the
		// next window overlaps.
		return nil
	}
	f := store.DeviceFilter{ChangedSince: since, Limit: 1000}
	for {
		changed, err := s.store.Devices(ctx, f)
		if err != nil {
			return err
		}
		for _, d := range changed {
			s.mu.Lock()
			ld := s.live[d.ID]
			s.mu.Unlock()
			switch {
			case ld == nil:
			case d.Revoked():
				s.closeDevice(d.ID, protocol.CloseRevoked)
			case d.KeyCreatedAt.After(ld.connectedAt):
				s.closeDevice(d.ID, protocol.CloseBadCredentials)
			}
		}
		if len(changed) < f.Limit {
			break
		}
		f.After = changed[len(changed)-1].ID
	}
	return nil
}

// closeDevice closes every live connection of the device with code.
func (s *Service) closeDevice(id string, code int) {
	if s.closeIdentity != nil {
		s.closeIdentity(id, code)
		return
	}
	s.mu.Lock()
	d := s.live[id]
	s.mu.Unlock()
	if d != nil {
		d.conn.Close(code)
	}
}

// ownerFrame is a frame for a device's owner, sent after the lock is released.
type ownerFrame struct {
	owner, device string
	frame         any
}

func (s *Service) send(frames []ownerFrame) {
	for _, f := range frames {
		s.notify(f.owner, f.device, f.frame)
	}
}

// StateFrame tells owners that a device changed state.
type StateFrame struct {
	Type     string    `json:"type"`
	Device   string    `json:"device"`
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Previous string    `json:"previous"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// setState changes d's state and returns the frame announcing it. s.mu is held.
func (s *Service) setState(id string, d *liveDevice, state, reason string, now time.Time) ownerFrame {
	prev := d.state
	d.state = state
	return ownerFrame{d.owner, id, StateFrame{Type: protocol.TypeDeviceState, Device: id, Name: d.name, State: state, Previous: prev,
		Reason: reason, At: now.UTC(), LastSeen: d.lastBeat.UTC()}}
}

// connected records a new connection of a device and delivers its queued
// commands. An older connection of the same device is replaced.
func (s *Service) connected(ctx context.Context, c Conn, id, owner, name, ip string) {
	now := s.cfg.Now()
	d := &liveDevice{conn: c, owner: owner, name: name, connectedAt: now, lastBeat: now, state: StateOffline}
	// The stored health is read only when this node knows nothing newer:
	// Authenticate left it in boots moments ago for a key handshake.
	s.mu.Lock()
	_, known := s.boots[id]
	known = known || s.live[id] != nil
	s.mu.Unlock()
	var stored *unhidra.Device
	if !known {
		var err error
		if stored, err = s.store.DeviceByID(ctx, id); err != nil {
			s.log.Warn("load device on connect", "device", id, "err", err)
		}
	}
	s.mu.Lock()
	// What this node knows is newer than what was flushed: the live
	// connection being replaced, else the last one that went away.
	old := s.live[id]
	switch b, ok := s.boots[id]; {
	case old != nil:
		d.boot, d.freeHeap, d.state = old.boot, old.freeHeap, old.state
	case ok:
		d.boot, d.freeHeap = b, b.freeHeap
	case stored != nil:
		d.boot = storedBoot(stored)
		d.freeHeap = d.boot.freeHeap
	}
	delete(s.boots, id)
	s.live[id] = d
	var frames []ownerFrame
	if d.state != StateOnline {
		frames = append(frames, s.setState(id, d, StateOnline, "connected", now))
	}
	s.queueHealth(id, d, now)
	s.pend.events = append(s.pend.events, unhidra.AuditEvent{At: now, Action: unhidra.AuditDeviceConnected, Target: id, IP: ip})
	s.mu.Unlock()
	if old != nil && old.conn != c {
		old.conn.Close(protocol.CloseReplaced)
	}
	s.send(frames)
	s.pump(ctx, id, true)
}

// storedBoot is what a device's stored record says about its boot.
func storedBoot(d *unhidra.Device) bootState {
	return bootState{reboots: d.Reboots, uptime: d.Uptime, at: d.LastSeen, known: !d.LastSeen.IsZero(), freeHeap: d.FreeHeap}
}

// Authenticate checks a device key (Registry.Authenticate). The record it
// read also carries the device's stored health: unless this node knows
// newer (a live connection, or the last heartbeat of one that went away),
// it is kept for Connect, which then need not read the record again. Entries
// of handshakes that never connect are pruned by Sweep with the rest of boots.
func (s *Service) Authenticate(ctx context.Context, key string) (*unhidra.Device, error) {
	d, err := s.reg.Authenticate(ctx, key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if _, ok := s.boots[d.ID]; !ok && s.live[d.ID] == nil {
		s.boots[d.ID] = storedBoot(d)
	}
	s.mu.Unlock()
	return d, nil
}

// disconnected records that a connection went away. A connection that was
// already replaced changes nothing.
func (s *Service) disconnected(c Conn, id string) {
	now := s.cfg.Now()
	s.mu.Lock()
	d := s.live[id]
	if d == nil || d.conn != c {
		// Replaced: the trail still shows the connection ending.
		s.pend.events = append(s.pend.events, unhidra.AuditEvent{At: now, Action: unhidra.AuditDeviceDisconnected, Target: id,
			Detail: `{"reason":"replaced"}`})
		s.mu.Unlock()
		return
	}
	delete(s.live, id)
	b := d.boot
	b.freeHeap = d.freeHeap
	s.boots[id] = b
	f := s.setState(id, d, StateOffline, "disconnected", now)
	s.queueHealth(id, d, now)
	h := s.pend.health[id]
	h.ConnectedSince = time.Time{}
	s.pend.health[id] = h
	s.pend.events = append(s.pend.events, unhidra.AuditEvent{At: now, Action: unhidra.AuditDeviceDisconnected, Target: id})
	s.mu.Unlock()
	s.send([]ownerFrame{f})
}

// queueHealth stages d's health for the next flush. s.mu is held.
func (s *Service) queueHealth(id string, d *liveDevice, now time.Time) {
	s.pend.health[id] = store.DeviceHealth{DeviceID: id, LastSeen: now, ConnectedSince: d.connectedAt, Connection: d.connectedAt,
		Reboots: d.boot.reboots, FreeHeap: d.freeHeap, Uptime: d.boot.uptime}
}

// Heartbeat is a validated heartbeat.
type Heartbeat struct {
	Uptime   float64 // seconds since boot
	FreeHeap int64   // bytes
}

// bootState is what a device's heartbeats said about its boot.
type bootState struct {
	known    bool      // a heartbeat was seen (uptime and at are set)
	uptime   float64   // seconds since boot at the last heartbeat
	at       time.Time // when the last heartbeat arrived (or, from the store, was last seen: never earlier)
	bootAt   time.Time // estimated boot time: the earliest arrival minus uptime in this boot (zero: unknown)
	reboots  int
	freeHeap int64 // kept across a disconnect only
}

// rebootSlack is how much later than the previous heartbeat a boot may
// seem to be, from network delay and a seconds-resolution uptime, before
// it counts as a reboot.
const rebootSlack = 30 * time.Second

// maxClockLag is how far behind the wall clock a device's uptime may fall
// (delay, drift) before its samples are re-anchored to the arrival time.
const maxClockLag = 5 * time.Minute

// rebooted reports whether a heartbeat with uptime arriving at now comes
// from a new boot: the uptime went backwards, or the boot it implies
// (now − uptime) is later than the previous heartbeat, so the device
// booted after it was last heard even if its new uptime is larger (it was
// away longer than it has been up). Both hold whatever connection or node
// the heartbeats came through.
func (b bootState) rebooted(uptime float64, now time.Time) bool {
	if !b.known {
		return false
	}
	implied := now.Add(-time.Duration(uptime * float64(time.Second)))
	return uptime < b.uptime || implied.After(b.at.Add(rebootSlack))
}

// sampleTime places a heartbeat on the wall clock by the device's own
// uptime: boot time + uptime, with the boot time estimated from the
// least-delayed heartbeat of this boot. Receive-time jitter (network,
// queues, flush timing) does not move the sample. b is updated.
func (b *bootState) sampleTime(uptime float64, now time.Time, newBoot bool) time.Time {
	up := time.Duration(uptime * float64(time.Second))
	implied := now.Add(-up)
	switch {
	case newBoot, b.bootAt.IsZero(), implied.Sub(b.bootAt) > maxClockLag:
		// A new boot, or a device clock that runs slow by minutes: start again.
		b.bootAt = implied
	case implied.Before(b.bootAt):
		b.bootAt = implied // a less-delayed heartbeat
	}
	return b.bootAt.Add(up)
}

// heartbeat applies a heartbeat from a connected device: it refreshes the
// state (stale → online), detects a reboot (see bootState.rebooted) and adds
// the free-heap sample, timed by the device's uptime, to the minute and hour
// buckets. It reports whether the device is connected.
func (s *Service) heartbeat(id string, hb Heartbeat) bool {
	now := s.cfg.Now()
	var frames []ownerFrame
	s.mu.Lock()
	d := s.live[id]
	if d == nil {
		s.mu.Unlock()
		return false
	}
	reboot := d.boot.rebooted(hb.Uptime, now)
	if reboot {
		d.boot.reboots++
		detail, _ := json.Marshal(map[string]any{"previous_uptime": d.boot.uptime, "uptime": hb.Uptime, "reboots": d.boot.reboots})
		s.pend.events = append(s.pend.events, unhidra.AuditEvent{At: now, Action: unhidra.AuditDeviceRebooted, Target: id, Detail: string(detail)})
	}
	at := d.boot.sampleTime(hb.Uptime, now, reboot)
	d.boot.uptime, d.boot.at, d.boot.known = hb.Uptime, now, true
	d.freeHeap, d.lastBeat = hb.FreeHeap, now
	if d.state != StateOnline {
		frames = append(frames, s.setState(id, d, StateOnline, "heartbeat", now))
	}
	s.queueHealth(id, d, now)
	for _, res := range []int{store.HeapMinute, store.HeapHour} {
		start := at.Truncate(time.Duration(res) * time.Second)
		k := heapKey{id, res, start.UnixMilli()}
		if b := s.pend.heap[k]; b != nil {
			b.Min, b.Max = min(b.Min, hb.FreeHeap), max(b.Max, hb.FreeHeap)
			b.Sum += hb.FreeHeap
			b.Count++
		} else {
			s.pend.heap[k] = &store.HeapBucket{DeviceID: id, Res: res, Start: start, Min: hb.FreeHeap, Max: hb.FreeHeap, Sum: hb.FreeHeap, Count: 1}
		}
	}
	s.mu.Unlock()
	s.send(frames)
	return true
}

// telemetry stages a validated telemetry frame. It reports false when the
// pending batch is full and the frame was dropped.
func (s *Service) telemetry(id string, readings json.RawMessage) bool {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Telemetry is not a heartbeat: health follows heartbeats only.
	if len(s.pend.telemetry) >= s.cfg.MaxPendingTelemetry {
		s.droppedTelemetry.Add(1)
		return false
	}
	s.pend.telemetry = append(s.pend.telemetry, unhidra.Telemetry{DeviceID: id, At: now, Readings: readings})
	return true
}

// View is a device as the API shows it: the stored record with the live
// state laid over it.
type View struct {
	unhidra.Device
	Revoked           bool   `json:"revoked"`
	State             string `json:"state"`
	HeartbeatInterval int    `json:"heartbeat_interval"` // seconds
}

// View returns d with its live state.
func (s *Service) View(d *unhidra.Device) View {
	v := View{Device: *d, Revoked: d.Revoked(), State: StateOffline, HeartbeatInterval: int(s.cfg.HeartbeatInterval / time.Second)}
	v.ConnectedSince = time.Time{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ld := s.live[d.ID]; ld != nil {
		v.State, v.ConnectedSince, v.LastSeen = ld.state, ld.connectedAt.UTC(), ld.lastBeat.UTC()
		v.Reboots, v.FreeHeap, v.Uptime = ld.boot.reboots, ld.freeHeap, ld.boot.uptime
	}
	return v
}

// State returns the device's current state.
func (s *Service) State(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.live[id]; d != nil {
		return d.state
	}
	return StateOffline
}

// Stats are the service's counters.
type Stats struct {
	Online, Stale     int
	DroppedTelemetry  uint64
	FlushFailures     uint64
	PendingHealth     int
	PendingHeapBucket int
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{DroppedTelemetry: s.droppedTelemetry.Load(), FlushFailures: s.flushFailures.Load(),
		PendingHealth: len(s.pend.health), PendingHeapBucket: len(s.pend.heap)}
	for _, d := range s.live {
		if d.state == StateOnline {
			st.Online++
		} else {
			st.Stale++
		}
	}
	return st
}

package device

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Limits on commands.
const (
	MaxCommandLen  = 64
	MaxParamsBytes = 8192
	// commandScan is how many commands of one status a delivery round
	// reads (the store's most); MaxQueuedCommands may not exceed it.
	commandScan = 1000
)

// Actor is who asks: a signed-in user (REST) or a connection's identity.
type Actor struct {
	ID, Name string
	Admin    bool
}

// ActorOf returns the actor for a user.
func ActorOf(u *unhidra.User) Actor { return Actor{ID: u.ID, Name: u.Name, Admin: u.IsAdmin()} }

// Device returns the device if the actor may see it: its owner or an
// administrator. Anyone else gets protocol.ErrNotFound, as for a device that does not
// exist, so IDs cannot be probed.
func (s *Service) Device(ctx context.Context, a Actor, id string) (*unhidra.Device, error) {
	if id == "" || len(id) > 64 {
		return nil, unhidra.Errorf(protocol.ErrNotFound, "No such device.")
	}
	d, err := s.store.DeviceByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.OwnerID != a.ID && !a.Admin {
		return nil, unhidra.Errorf(protocol.ErrNotFound, "No such device.")
	}
	return d, nil
}

// CommandRequest is an owner's command.
type CommandRequest struct {
	Command    string          `json:"command"`
	Params     json.RawMessage `json:"params,omitempty"`
	Type       string          `json:"type,omitempty"` // "command" (default), "config" or "ota"
	TTLSeconds int             `json:"ttl_seconds,omitempty"`
}

// Valid implements api.Validator.
func (r *CommandRequest) Valid(context.Context) error {
	switch {
	case r.Command == "" || len(r.Command) > MaxCommandLen || !isIdent(r.Command):
		return unhidra.Errorf(protocol.ErrInvalid, "command must be 1 to %d characters of [A-Za-z0-9._:-].", MaxCommandLen)
	case len(r.Params) > MaxParamsBytes:
		return unhidra.Errorf(protocol.ErrTooLarge, "params must be at most %d bytes.", MaxParamsBytes)
	case r.Type != "" && r.Type != protocol.TypeCommand && r.Type != protocol.TypeConfig && r.Type != protocol.TypeOTA:
		return unhidra.Errorf(protocol.ErrInvalid, "type must be command, config or ota.")
	case r.TTLSeconds < 0:
		return unhidra.Errorf(protocol.ErrInvalid, "ttl_seconds must be positive.")
	}
	if len(r.Params) > 0 && !json.Valid(r.Params) {
		return unhidra.Errorf(protocol.ErrInvalid, "params must be JSON.")
	}
	return nil
}

// SendCommand queues a command for a device the actor owns (or any, for
// an administrator) and delivers it at once if the device is connected.
// Returns protocol.ErrNotFound for devices the actor may not see, protocol.ErrConflict for a
// revoked device and protocol.ErrRateLimited when too many commands are queued.
func (s *Service) SendCommand(ctx context.Context, a Actor, deviceID string, req CommandRequest) (*unhidra.Command, error) {
	if err := req.Valid(ctx); err != nil {
		return nil, err
	}
	d, err := s.Device(ctx, a, deviceID)
	if err != nil {
		return nil, err
	}
	if d.Revoked() {
		return nil, unhidra.Errorf(protocol.ErrConflict, "The device is revoked.")
	}
	queued, err := s.store.Commands(ctx, d.ID, unhidra.CommandQueued, s.cfg.MaxQueuedCommands)
	if err != nil {
		return nil, err
	}
	if len(queued) >= s.cfg.MaxQueuedCommands {
		return nil, unhidra.Errorf(protocol.ErrRateLimited, "%d commands are already queued for this device.", len(queued))
	}
	ttl := s.cfg.DefaultCommandTTL
	if req.TTLSeconds > 0 {
		// Compared in seconds first: a huge value would overflow Duration.
		ttl = s.cfg.MaxCommandTTL
		if int64(req.TTLSeconds) < int64(s.cfg.MaxCommandTTL/time.Second) {
			ttl = time.Duration(req.TTLSeconds) * time.Second
		}
	}
	typ := req.Type
	if typ == "" {
		typ = protocol.TypeCommand
	}
	now := s.commandTime()
	cmd := &unhidra.Command{ID: unhidra.NewID(unhidra.PrefixCommand), DeviceID: d.ID, Type: typ, Command: req.Command,
		Params: compact(req.Params), Status: unhidra.CommandQueued, CreatedBy: a.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.CreateCommand(ctx, cmd); err != nil {
		return nil, err
	}
	if sent := s.pump(ctx, d.ID, false); sent[cmd.ID] != nil {
		cmd = sent[cmd.ID]
	}
	if cmd.Status == unhidra.CommandQueued {
		s.commandStatus(ctx, cmd)
	}
	return cmd, nil
}

// commandFrame is what a device receives: its type is the command's type,
// as the seed firmware listens for "command", "config" and "ota".
type commandFrame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Command string          `json:"command"`
	Params  json.RawMessage `json:"params,omitempty"`
}

func frameOf(cmd *unhidra.Command) commandFrame {
	return commandFrame{Type: cmd.Type, ID: cmd.ID, Command: cmd.Command, Params: cmd.Params}
}

// pump fills the device's command window: while fewer than CommandWindow
// commands sent on its connection await an answer, it sends the oldest
// unexpired queued commands and marks them delivered. With resend (a new
// connection), commands delivered earlier and never answered are sent
// again first, oldest first: delivery is at least once, and devices
// de-duplicate by command id. Deliveries to one connection are serialised,
// so a device receives its commands in creation order. It returns the
// commands it marked delivered, by id.
func (s *Service) pump(ctx context.Context, deviceID string, resend bool) map[string]*unhidra.Command {
	s.mu.Lock()
	d := s.live[deviceID]
	s.mu.Unlock()
	if d == nil {
		return nil
	}
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	room := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.live[deviceID] != d {
			return 0 // replaced or gone: the next connection pumps
		}
		return s.cfg.CommandWindow - len(d.outstanding)
	}
	now := s.cfg.Now()
	// queued is nil until read: on a new connection one read brings both
	// what was delivered to an earlier connection and what is queued (a
	// reconnect storm pays one query per device, not two). Commands
	// created meanwhile are pumped by their creator, which waits for
	// sendMu.
	var queued []*unhidra.Command
	if resend {
		pending, err := s.store.PendingCommands(ctx, deviceID, 2*commandScan)
		if err != nil {
			s.log.Error("load pending commands", "device", deviceID, "err", err)
			return nil
		}
		var delivered []*unhidra.Command
		queued = []*unhidra.Command{}
		for _, cmd := range slices.Backward(pending) { // oldest first
			if cmd.Status == unhidra.CommandDelivered {
				delivered = append(delivered, cmd)
			} else {
				queued = append(queued, cmd)
			}
		}
		for _, cmd := range delivered {
			if room() <= 0 {
				return nil
			}
			if !cmd.ExpiresAt.After(now) {
				continue // Sweep expires it
			}
			s.setOutstanding(d, cmd.ID, true)
			if d.conn.SendJSON(frameOf(cmd)) != nil {
				return nil // the connection is going; the next one resends
			}
		}
	}
	if room() <= 0 {
		return nil
	}
	if queued == nil {
		var err error
		if queued, err = s.store.Commands(ctx, deviceID, unhidra.CommandQueued, commandScan); err != nil {
			s.log.Error("load queued commands", "device", deviceID, "err", err)
			return nil
		}
		slices.Reverse(queued)
	}
	var sent map[string]*unhidra.Command
	for _, cmd := range queued {
		if room() <= 0 {
			break
		}
		if !cmd.ExpiresAt.After(now) {
			continue
		}
		got := s.deliver(ctx, d, cmd)
		if got == nil {
			break
		}
		if sent == nil {
			sent = map[string]*unhidra.Command{}
		}
		sent[cmd.ID] = got
	}
	return sent
}

// setOutstanding adds id to (or removes it from) the commands d's
// connection has not answered yet.
func (s *Service) setOutstanding(d *liveDevice, id string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		if d.outstanding == nil {
			d.outstanding = map[string]struct{}{} // most devices idle without one
		}
		d.outstanding[id] = struct{}{}
	} else {
		delete(d.outstanding, id)
	}
}

// deliver sends cmd to the device and marks it delivered. It returns the
// updated command (acked already, if the device answered faster than the
// update), or nil if it stays queued. d.sendMu is held.
func (s *Service) deliver(ctx context.Context, d *liveDevice, cmd *unhidra.Command) *unhidra.Command {
	s.setOutstanding(d, cmd.ID, true)
	if err := d.conn.SendJSON(frameOf(cmd)); err != nil {
		s.setOutstanding(d, cmd.ID, false)
		return nil // the connection is going; the command waits for the next one
	}
	got, err := s.store.UpdateCommand(ctx, cmd.DeviceID, cmd.ID, store.CommandUpdate{
		From: []string{unhidra.CommandQueued}, Status: unhidra.CommandDelivered, At: s.cfg.Now()})
	if err != nil {
		// protocol.ErrConflict: the device acknowledged faster than we recorded the
		// delivery; its ack already moved the command on.
		if unhidra.ErrorCode(err) != protocol.ErrConflict {
			s.log.Error("mark command delivered", "command", cmd.ID, "err", err)
			return nil
		}
		if got, err = s.store.CommandByID(ctx, cmd.DeviceID, cmd.ID); err != nil {
			return nil
		}
		return got
	}
	s.commandStatus(ctx, got)
	return got
}

// StatusFrame tells owners a command changed status.
type StatusFrame struct {
	Type    string           `json:"type"`
	Device  string           `json:"device"`
	Command *unhidra.Command `json:"command"`
}

// commandStatus tells the device's owner about cmd's new status.
func (s *Service) commandStatus(ctx context.Context, cmd *unhidra.Command) {
	owner := ""
	s.mu.Lock()
	if ld := s.live[cmd.DeviceID]; ld != nil {
		owner = ld.owner
	}
	s.mu.Unlock()
	if owner == "" {
		d, err := s.store.DeviceByID(ctx, cmd.DeviceID)
		if err != nil {
			return
		}
		owner = d.OwnerID
	}
	s.notify(owner, cmd.DeviceID, StatusFrame{Type: protocol.TypeCommandStatus, Device: cmd.DeviceID, Command: cmd})
}

// commandTime returns the creation time of a new command: the clock's
// time, but strictly after the previous command's, because queues are
// delivered in creation order and the store keeps milliseconds.
func (s *Service) commandTime() time.Time {
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.After(s.lastCommandAt) {
		now = s.lastCommandAt.Add(time.Millisecond)
	}
	s.lastCommandAt = now
	return now
}

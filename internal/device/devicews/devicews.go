// Package devicews is the device service's WebSocket adapter: it
// authenticates device keys for the gateway, turns device frames
// (heartbeat, telemetry, ack) and owners' command.send frames into calls of
// device.Service, and hooks the service to the gateway's connection events
// and to the cluster. The device package does not know the gateway; this
// package is where the two meet.
package devicews

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/protocol"
)

// ackFrame answers a device or command.send frame that carried an id.
type ackFrame struct {
	Type    string           `json:"type"`
	ID      string           `json:"id,omitempty"`
	Command *unhidra.Command `json:"command,omitempty"`
}

// Authenticator returns the gateway's key authenticator: a device connects
// as identity kind "device" with its device ID; OwnerID is its owner.
func Authenticator(s *device.Service) func(ctx context.Context, key string) (gateway.Identity, error) {
	return func(ctx context.Context, key string) (gateway.Identity, error) {
		d, err := s.Authenticate(ctx, key)
		if err != nil {
			return gateway.Identity{}, err
		}
		return gateway.Identity{Kind: gateway.KindDevice, ID: d.ID, Name: d.Name, OwnerID: d.OwnerID}, nil
	}
}

// Attach links the service to the gateway's cluster (frames to owners and
// following conversations, closes on every node) and installs the device
// frame handlers and connection hooks. convs may be nil (no channel follows
// devices). ctx bounds the work connection hooks do. Call before serving.
func Attach(ctx context.Context, gw *gateway.Gateway, s *device.Service, convs device.Conversations) {
	s.Attach(ctx, device.Links{Router: gw.Router(), CloseIdentity: gw.CloseIdentity, Conversations: convs})
	h := handlers{s}
	gw.Handle(protocol.TypeHeartbeat, h.heartbeat)
	gw.Handle(protocol.TypeTelemetry, h.telemetry)
	// Acks are answers to commands the server sent (at most CommandWindow
	// at a time): they are not charged to the frame rate limit, so a
	// device answering a burst of commands is never cut off for it.
	gw.HandleUnmetered(protocol.TypeAck, h.ack)
	gw.OnWelcome(func(c *gateway.Client, w *protocol.Welcome) {
		if c.Ident().Kind == gateway.KindDevice {
			w.Limits.CommandWindow = s.CommandWindow()
			w.Limits.MaxResultBytes = device.MaxResultBytes
			w.Limits.MaxErrorBytes = device.MaxAckErrorLen
		}
	})
	gw.Handle(protocol.TypeCommandSend, h.commandSend)
	gw.OnConnect(func(c *gateway.Client) {
		if id := c.Ident(); id.Kind == gateway.KindDevice {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			s.Connect(cctx, c, id.ID, id.OwnerID, id.Name, c.RemoteIP())
		}
	})
	gw.OnDisconnect(func(c *gateway.Client) {
		if id := c.Ident(); id.Kind == gateway.KindDevice {
			s.Disconnect(c, id.ID)
		}
	})
}

type handlers struct{ s *device.Service }

// heartbeat: {"type":"heartbeat","device_id":"dev_…","ts":…,"free_heap":…}.
// The firmware sends no id and expects no answer; clients that want
// confirmation send one.
func (h handlers) heartbeat(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	id := c.Ident()
	if id.Kind != gateway.KindDevice {
		return unhidra.Errorf(protocol.ErrForbidden, "Only devices send heartbeats.")
	}
	if err := h.s.ReceiveHeartbeat(id.ID, e); err != nil {
		return err
	}
	if e.ID != "" {
		return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID})
	}
	return nil
}

func (h handlers) telemetry(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	id := c.Ident()
	if id.Kind != gateway.KindDevice {
		return unhidra.Errorf(protocol.ErrForbidden, "Only devices send telemetry.")
	}
	if err := h.s.ReceiveTelemetry(id.ID, e); err != nil {
		return err
	}
	if e.ID != "" {
		return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID})
	}
	return nil
}

// ack is a device's answer to a command. Acks are unmetered
// (Gateway.HandleUnmetered): one answering a command this connection is
// waiting for is free; any other is charged to the frame rate limit.
func (h handlers) ack(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	id := c.Ident()
	if id.Kind != gateway.KindDevice || !h.s.Expecting(id.ID, c, e.ID) {
		if !c.Meter() {
			return nil
		}
	}
	if id.Kind != gateway.KindDevice {
		return unhidra.Errorf(protocol.ErrInvalid, "Only devices acknowledge commands.")
	}
	return h.s.ReceiveAck(ctx, id.ID, e)
}

// commandSend lets an owner send a command over WebSocket:
// {"type":"command.send","id"?,"device","command","params"?}.
func (h handlers) commandSend(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	id := c.Ident()
	if id.Kind == gateway.KindDevice {
		return unhidra.Errorf(protocol.ErrForbidden, "Devices cannot send commands.")
	}
	req := device.CommandRequest{Command: e.Command, Params: e.Params, Type: e.CommandType, TTLSeconds: e.TTLSeconds}
	cmd, err := h.s.SendCommand(ctx, device.Actor{ID: id.ID, Name: id.Name, Admin: id.Admin}, e.Device, req)
	if err != nil {
		return err
	}
	return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID, Command: cmd})
}

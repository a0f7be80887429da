// Package chatws is the messaging service's WebSocket adapter: it turns the
// gateway's frames (send, edit, delete, history, read, typing, resume,
// presence) into calls of chat.Service and answers them, and hooks the
// service to the gateway's connection events. The chat package does not
// know the gateway; this package is where the two meet.
package chatws

import (
	"context"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/protocol"
)

// ackFrame answers a client frame that carried an id.
type ackFrame struct {
	Type      string `json:"type"`
	ID        string `json:"id,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Seq       int64  `json:"seq,omitempty"`
	Channel   string `json:"channel,omitempty"`
}

// historyFrame answers a history frame.
type historyFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Channel string `json:"channel"`
	*chat.HistoryPage
}

func actorOf(c *gateway.Client) chat.Actor {
	id := c.Ident()
	return chat.Actor{ID: id.ID, Name: id.Name, Admin: id.Admin}
}

// Register installs the messaging frame handlers and connection hooks on
// the gateway. Call before serving.
func Register(gw *gateway.Gateway, s *chat.Service) {
	h := handlers{s}
	gw.Handle(protocol.TypeSend, h.send)
	gw.Handle(protocol.TypeEdit, h.edit)
	gw.Handle(protocol.TypeDelete, h.delete)
	gw.Handle(protocol.TypeHistory, h.history)
	gw.Handle(protocol.TypeResume, h.resume)
	gw.Handle(protocol.TypeTyping, h.typing)
	gw.Handle(protocol.TypePresence, h.presence)
	gw.Handle(protocol.TypeRead, h.read)
	gw.OnConnect(func(c *gateway.Client) { s.Connect(c) })
	gw.OnDisconnect(func(c *gateway.Client) { s.Disconnect(c) })
}

type handlers struct{ s *chat.Service }

func (h handlers) send(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	_, _, err := h.s.Send(ctx, actorOf(c), chat.SendInput{Channel: e.Channel, To: e.To, Body: e.Body, ClientID: e.ID},
		func(m *unhidra.Message) {
			c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID, MessageID: m.ID, Seq: m.Seq, Channel: m.ConversationID})
		})
	return err
}

func (h handlers) edit(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	m, err := h.s.Edit(ctx, actorOf(c), e.Channel, e.MessageID, e.Body)
	if err != nil {
		return err
	}
	return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID, MessageID: m.ID, Seq: m.Seq, Channel: m.ConversationID})
}

func (h handlers) delete(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	m, err := h.s.Delete(ctx, actorOf(c), e.Channel, e.MessageID)
	if err != nil {
		return err
	}
	return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID, MessageID: m.ID, Seq: m.Seq, Channel: m.ConversationID})
}

func (h handlers) history(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	page, err := h.s.History(ctx, actorOf(c), e.Channel, e.Before, e.After, e.Limit)
	if err != nil {
		return err
	}
	return c.SendJSON(historyFrame{Type: protocol.TypeHistory, ID: e.ID, Channel: e.Channel, HistoryPage: page})
}

func (h handlers) read(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	if len(e.Positions) == 0 || len(e.Positions) > chat.MaxResumeConversations {
		return unhidra.Errorf(protocol.ErrInvalid, "read needs positions (1 to %d conversations).", chat.MaxResumeConversations)
	}
	for conv, seq := range e.Positions {
		if _, err := h.s.MarkRead(ctx, actorOf(c), conv, seq); err != nil {
			return err
		}
	}
	return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID})
}

func (h handlers) typing(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	return h.s.Typing(c, e.Channel)
}

func (h handlers) resume(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	if err := h.s.Resume(ctx, actorOf(c), c, e.ID, e.Positions, func(f any) { c.SendJSON(f) }); err != nil {
		return err
	}
	return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID})
}

func (h handlers) presence(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
	if e.Status != chat.StatusOnline && e.Status != chat.StatusAway {
		return unhidra.Errorf(protocol.ErrInvalid, "status must be online or away.")
	}
	h.s.SetStatus(ctx, c.Identity(), e.Status)
	return c.SendJSON(ackFrame{Type: protocol.TypeAck, ID: e.ID})
}

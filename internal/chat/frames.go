package chat

import (
	"context"
	"slices"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/lazyctx"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// MaxResumeConversations bounds the conversations of one resume frame.
const MaxResumeConversations = 500

type MessageFrame struct {
	Type      string    `json:"type,omitempty"`
	Channel   string    `json:"channel"`
	Seq       int64     `json:"seq"`
	MessageID string    `json:"message_id"`
	From      string    `json:"from"`
	FromName  string    `json:"from_name,omitempty"`
	FromKind  string    `json:"from_kind,omitempty"` // user, bot or device
	Body      string    `json:"body"`
	TS        time.Time `json:"ts"`
	EditedAt  time.Time `json:"edited_at,omitzero"`
	Deleted   bool      `json:"deleted,omitempty"`
}

// MessageFrame is a stored message as clients see it, with the sender's
// name so that no client needs a directory of identities.
func (s *Service) MessageFrame(ctx context.Context, m *unhidra.Message) MessageFrame {
	w := s.names.who(ctx, m.SenderID)
	return MessageFrame{Type: protocol.TypeMessage, Channel: m.ConversationID, Seq: m.Seq, MessageID: m.ID,
		From: m.SenderID, FromName: w.name, FromKind: w.kind, Body: m.Body, TS: m.CreatedAt,
		EditedAt: m.EditedAt, Deleted: !m.DeletedAt.IsZero()}
}

type editedFrame struct {
	Type      string    `json:"type"`
	Channel   string    `json:"channel"`
	Seq       int64     `json:"seq"`
	MessageID string    `json:"message_id"`
	Body      string    `json:"body"`
	EditedAt  time.Time `json:"edited_at"`
}

type deletedFrame struct {
	Type      string `json:"type"`
	Channel   string `json:"channel"`
	Seq       int64  `json:"seq"`
	MessageID string `json:"message_id"`
}

type memberEvent struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	Member  string `json:"member"`
	// LastSeq (conversation_added only): the conversation's last seq when
	// the member was added; the client fetches what follows from history.
	LastSeq int64 `json:"last_seq,omitempty"`
}

type channelEvent struct {
	Type     string `json:"type"`
	Channel  string `json:"channel"`
	Name     string `json:"name"`
	Archived bool   `json:"archived"`
}

type typingFrame struct {
	Type     string `json:"type"`
	Channel  string `json:"channel"`
	From     string `json:"from"`
	FromName string `json:"from_name,omitempty"`
	FromKind string `json:"from_kind,omitempty"`
}

type resumedFrame struct {
	Type      string         `json:"type"`
	ID        string         `json:"id,omitempty"`
	Channel   string         `json:"channel"`
	Recovered bool           `json:"recovered"`
	Reason    string         `json:"reason,omitempty"` // when not recovered: not_member, too_many, too_large
	LastSeq   int64          `json:"last_seq"`
	Messages  []MessageFrame `json:"messages"`
}

// Typing tells a conversation's other connections that the client's
// identity is typing. It is checked against the connection's subscriptions
// (no store access), rate limited, and never stored; a notice over the
// rate is dropped silently.
func (s *Service) Typing(c hub.Client, conv string) error {
	s.subsMu.Lock()
	member := false
	if st := s.conns[c.ConnID()]; st != nil {
		_, member = st.convs[conv]
	}
	s.subsMu.Unlock()
	if !member {
		return unhidra.Errorf(protocol.ErrNotFound, "No such conversation, or you are not a member.")
	}
	if ok, _ := s.typing.Allow(c.Identity()+"\x00"+conv, s.cfg.Now()); !ok {
		return nil
	}
	s.publish(conv, typingFrame{Type: protocol.TypeTyping, Channel: conv, From: c.Identity(), FromName: s.names.name(s.ctx, c.Identity()), FromKind: s.names.kind(s.ctx, c.Identity())})
	return nil
}

// Resume sends, through send, one "resumed" frame per conversation in
// positions (conversation → last seq the client saw), in the order of the
// conversation IDs: the messages after that seq up to the conversation's
// last_seq when at most ResumeLimit are missing and the reply fits the
// byte budget, else recovered:false (the client pages history over REST).
//
// last_seq is the last seq this node has delivered in the conversation
// (its sequencer's position, which covers messages stored on any node).
// From that snapshot until the "resumed" frame is queued, the
// conversation's live frames for this connection are held back and queued
// right after it, so the frame splits the connection's stream exactly:
// every message frame before it has seq ≤ last_seq, every one after it
// seq > last_seq, from last_seq+1 on. Only the snapshot and the final
// hand-over take the conversation's lock; the store is read without it.
//
// c is the connection resuming (nil when the caller has none: then the
// store's last seq is used and no frames are held).
func (s *Service) Resume(ctx context.Context, actor Actor, c hub.Client, id string, positions map[string]int64, send func(any)) error {
	if len(positions) > MaxResumeConversations {
		return unhidra.Errorf(protocol.ErrTooLarge, "A resume names at most %d conversations.", MaxResumeConversations)
	}
	convs := make([]string, 0, len(positions))
	for conv, pos := range positions {
		if pos < 0 {
			return unhidra.Errorf(protocol.ErrInvalid, "Positions must not be negative.")
		}
		convs = append(convs, conv)
	}
	slices.Sort(convs)
	budget := s.cfg.ResumeBytes
	for _, conv := range convs {
		pos := positions[conv]
		f := resumedFrame{Type: protocol.TypeResumed, ID: id, Channel: conv, Messages: []MessageFrame{}}
		if _, err := s.requireMember(ctx, conv, actor.ID); err != nil {
			if unhidra.ErrorCode(err) != protocol.ErrNotFound {
				return err
			}
			f.Reason = protocol.ResumeNotMember
			send(f)
			continue
		}
		held := false
		if c != nil {
			f.LastSeq, held = s.delivery.beginHold(conv, c)
		}
		release := func() {
			if held {
				s.delivery.endHold(conv, c, func() { send(f) })
			} else {
				send(f)
			}
		}
		if !held {
			// Not followed here (yet): the store's position is the best
			// there is.
			cv, err := s.st.ConversationByID(ctx, conv)
			if err != nil {
				return err
			}
			f.LastSeq = cv.LastSeq
		}
		switch missing := f.LastSeq - pos; {
		case missing <= 0:
			f.Recovered = true
		case missing > int64(s.cfg.ResumeLimit):
			f.Reason = protocol.ResumeTooMany
		default:
			f.Recovered = true
			for after := pos; after < f.LastSeq; {
				page, _, err := s.st.History(ctx, store.HistoryQuery{ConversationID: conv, After: after, Before: f.LastSeq + 1, Limit: 200, Forward: true})
				if err != nil {
					f.Recovered, f.Reason, f.Messages = false, protocol.ResumeUnavailable, []MessageFrame{}
					break
				}
				if len(page) == 0 {
					break
				}
				for _, m := range page {
					mf := s.MessageFrame(ctx, m)
					mf.Type = ""
					f.Messages = append(f.Messages, mf)
				}
				after = page[len(page)-1].Seq
			}
		}
		if size := len(protocol.Marshal(f)); f.Recovered && size > budget {
			f.Recovered, f.Reason, f.Messages = false, protocol.ResumeTooLarge, []MessageFrame{}
		} else {
			budget -= size
		}
		release()
	}
	return nil
}

// Connect subscribes a new connection to its identity's conversations and
// records it as present. The gateway calls it once per connection.
func (s *Service) Connect(c hub.Client) {
	// Usually nothing waits on it (the member cache answers).
	ctx, cancel := lazyctx.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	id := c.Identity()
	st := &connState{client: c, convs: make(map[string]struct{}), device: s.quiet(c.Identity())}
	s.subsMu.Lock()
	// The common case of a reconnect storm: the identity's conversations
	// are cached and all followed on this node already (so no starting seq
	// is needed). Membership changes invalidate the cache under subsMu,
	// so what is read here is current.
	if convs, ok := s.cachedConversations(id); ok && s.delivery.followsAll(convs) {
		s.conns[c.ConnID()] = st
		for _, conv := range convs {
			st.convs[conv] = struct{}{}
			s.router.Subscribe(topic(conv), c)
		}
		s.subsMu.Unlock()
		s.presenceIfPerson(ctx, c, st)
		return
	}
	// Read memberships without the lock (a reconnect storm must not queue
	// on it); if a membership of this identity changed meanwhile, read
	// again under the lock, where no change can interleave.
	// The conversations' last seqs, read before subscribing, are where
	// this node's sequencer starts for a conversation it did not follow:
	// what is stored after the read reaches the connection, live or
	// filled from the store.
	before := s.changes[id]
	gen := s.members.generation()
	s.subsMu.Unlock()
	views, err := s.st.Conversations(ctx, id)
	s.subsMu.Lock()
	if s.changes[id] != before {
		views, err = s.st.Conversations(ctx, id)
	}
	if err != nil {
		s.log.Error("load conversations of a new connection", "identity", id, "err", err)
	}
	s.conns[c.ConnID()] = st
	ids := make([]string, 0, len(views))
	for _, v := range views {
		ids = append(ids, v.ID)
		st.convs[v.ID] = struct{}{}
		s.delivery.follow(v.ID, v.LastSeq)
		s.router.Subscribe(topic(v.ID), c)
	}
	if err == nil && s.busUp() {
		s.members.putConversations(id, gen, ids, s.cfg.Now())
	}
	s.subsMu.Unlock()
	s.presenceIfPerson(ctx, c, st)
}

func (s *Service) presenceIfPerson(ctx context.Context, c hub.Client, st *connState) {
	if !st.device {
		s.presenceConnect(ctx, c)
	}
}

// cachedConversations returns id's conversations from the member cache,
// unless the bus is down (changes from other nodes would not arrive).
func (s *Service) cachedConversations(id string) ([]string, bool) {
	if !s.busUp() {
		return nil, false
	}
	return s.members.conversations(id, s.cfg.Now())
}

// coMembers returns the identities sharing a conversation with id, from
// the member cache when it has them.
func (s *Service) coMembers(ctx context.Context, id string) ([]string, error) {
	if !s.busUp() {
		return s.st.CoMembers(ctx, id)
	}
	if co, ok := s.members.coMembers(id, s.cfg.Now()); ok {
		return co, nil
	}
	gen := s.members.generation()
	co, err := s.st.CoMembers(ctx, id)
	if err == nil && s.busUp() { // as in Connect: nothing read while the bus is down is kept
		s.members.putCoMembers(id, gen, co, s.cfg.Now())
	}
	return co, err
}

// ForgetMemberships drops the member cache of this node. Accounts call it
// on every identity change (a new account joins the default channel in the
// store, outside the membership changes chat announces).
func (s *Service) ForgetMemberships() { s.members.forget() }

// leave unsubscribes c from conv; this node stops sequencing conv with
// its last local subscriber. s.subsMu is held.
func (s *Service) leave(conv string, c hub.Client) {
	s.router.Unsubscribe(topic(conv), c)
	if s.hub.Subscribers(topic(conv)) == 0 {
		s.delivery.unfollow(conv)
	}
}

// Disconnect drops a connection's subscriptions and presence.
func (s *Service) Disconnect(c hub.Client) {
	s.subsMu.Lock()
	st := s.conns[c.ConnID()]
	delete(s.conns, c.ConnID())
	if st != nil {
		for id := range st.convs {
			s.leave(id, c)
		}
	}
	s.subsMu.Unlock()
	if st != nil && !st.device {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		defer cancel()
		s.presenceDisconnect(ctx, c.Identity())
	}
}

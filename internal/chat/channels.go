package chat

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/protocol"
)

// ChannelView is a conversation as the caller sees it, with its unread count.
type ChannelView struct {
	*unhidra.ConversationView
	Unread int64 `json:"unread"`
	// Names maps a DM's members to their names, so clients can label it.
	Names map[string]string `json:"names,omitempty"`
}

// ListPage returns a page of the actor's list, in ID order after the
// cursor after ("" for the first page): with dms its direct messages, else
// the channels it belongs to and the public channels it does not. next is
// the cursor of the following page, "" on the last.
func (s *Service) ListPage(ctx context.Context, actor Actor, dms bool, after string, limit int) (page []ChannelView, next string, err error) {
	views, err := s.st.ConversationPage(ctx, actor.ID, dms, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	if len(views) > limit {
		views = views[:limit]
		next = views[limit-1].ID
	}
	page = make([]ChannelView, 0, len(views))
	for _, v := range views {
		cv := ChannelView{ConversationView: v}
		if v.Member {
			cv.Unread = max(0, v.LastSeq-v.LastReadSeq)
		}
		if v.Kind == unhidra.KindDM {
			cv.Names = make(map[string]string, len(v.Members))
			for _, id := range v.Members {
				cv.Names[id] = s.names.name(ctx, id)
			}
		}
		page = append(page, cv)
	}
	return page, next, nil
}

// ValidChannelName checks a channel name: 1..MaxChannelName characters of
// UTF-8 without control or format characters and without surrounding space.
func ValidChannelName(name string) error {
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name):
		return unhidra.Errorf(protocol.ErrInvalid, "The name must be valid UTF-8.")
	case n == 0 || strings.TrimSpace(name) != name:
		return unhidra.Errorf(protocol.ErrInvalid, "The name must not be empty or start or end with spaces.")
	case n > unhidra.MaxChannelName:
		return unhidra.Errorf(protocol.ErrTooLarge, "The name is longer than %d characters.", unhidra.MaxChannelName)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		return unhidra.Errorf(protocol.ErrInvalid, "The name must not contain control characters.")
	}
	return nil
}

// CreateChannel creates a channel owned by the actor.
func (s *Service) CreateChannel(ctx context.Context, actor Actor, name string, private bool) (*unhidra.Conversation, error) {
	if err := ValidChannelName(name); err != nil {
		return nil, err
	}
	if !actor.Admin {
		if ok, retry := s.creates.Allow(actor.ID, time.Now()); !ok {
			e := unhidra.Errorf(protocol.ErrRateLimited, "You have created many channels recently; wait before creating another.")
			e.RetryAfter = int64(retry/time.Second) + 1
			return nil, e
		}
	}
	c := &unhidra.Conversation{Name: name, Kind: unhidra.KindPublic}
	if private {
		c.Kind = unhidra.KindPrivate
	}
	if err := s.st.CreateChannel(ctx, c, actor.ID); err != nil {
		return nil, err
	}
	s.subscribe(actor.ID, c.ID)
	return c, nil
}

// channelFor returns a channel (not a DM) and the actor's membership (nil
// for a non-member of a public channel). Private channels and DMs are
// protocol.ErrNotFound to non-members.
func (s *Service) channelFor(ctx context.Context, actor Actor, id string) (*unhidra.Conversation, *unhidra.Membership, error) {
	notFound := unhidra.Errorf(protocol.ErrNotFound, "No such channel.")
	if id == "" || len(id) > unhidra.MaxMemberIDLen {
		return nil, nil, notFound
	}
	c, err := s.st.ConversationByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.st.Membership(ctx, id, actor.ID)
	if err != nil && unhidra.ErrorCode(err) != protocol.ErrNotFound {
		return nil, nil, err
	}
	if m == nil && c.Kind != unhidra.KindPublic && !actor.Admin {
		return nil, nil, notFound
	}
	if c.Kind == unhidra.KindDM {
		return nil, nil, notFound
	}
	return c, m, nil
}

// isModerator reports whether the actor may manage the channel.
func isModerator(actor Actor, m *unhidra.Membership) bool {
	return actor.Admin || (m != nil && (m.Role == unhidra.ChanOwner || m.Role == unhidra.ChanAdmin))
}

// Channel returns one channel as the actor sees it.
func (s *Service) Channel(ctx context.Context, actor Actor, id string) (*unhidra.Conversation, *unhidra.Membership, error) {
	return s.channelFor(ctx, actor, id)
}

// Rename renames a channel (owner, channel admin or server admin).
func (s *Service) Rename(ctx context.Context, actor Actor, id, name string) (*unhidra.Conversation, error) {
	if err := ValidChannelName(name); err != nil {
		return nil, err
	}
	_, m, err := s.channelFor(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	if !isModerator(actor, m) {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Only the channel's owner or admins may rename it.")
	}
	c, err := s.st.RenameChannel(ctx, id, name)
	if err != nil {
		return nil, err
	}
	s.publish(id, channelEvent{Type: protocol.TypeChannelUpdated, Channel: id, Name: c.Name, Archived: c.Archived})
	return c, nil
}

// Archive makes a channel read-only (owner or server admin). The default
// channel cannot be archived.
func (s *Service) Archive(ctx context.Context, actor Actor, id string) (*unhidra.Conversation, error) {
	_, m, err := s.channelFor(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	if !actor.Admin && (m == nil || m.Role != unhidra.ChanOwner) {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Only the channel's owner may archive it.")
	}
	if id == unhidra.GeneralChannelID {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "The default channel cannot be archived.")
	}
	c, err := s.st.ArchiveChannel(ctx, id)
	if err != nil {
		return nil, err
	}
	s.publish(id, channelEvent{Type: protocol.TypeChannelUpdated, Channel: id, Name: c.Name, Archived: c.Archived})
	return c, nil
}

// Join adds the actor to a public, unarchived channel.
func (s *Service) Join(ctx context.Context, actor Actor, id string) error {
	c, m, err := s.channelFor(ctx, actor, id)
	if err != nil {
		return err
	}
	switch {
	case m != nil:
		return unhidra.Errorf(protocol.ErrConflict, "Already a member.")
	case c.Kind != unhidra.KindPublic:
		return unhidra.Errorf(protocol.ErrForbidden, "Private channels are joined by invitation.")
	case c.Archived:
		return unhidra.Errorf(protocol.ErrForbidden, "The channel is archived.")
	}
	return s.addMember(ctx, id, actor.ID, unhidra.ChanMember)
}

// Leave removes the actor from a channel.
func (s *Service) Leave(ctx context.Context, actor Actor, id string) error {
	if _, err := s.requireMember(ctx, id, actor.ID); err != nil {
		return err
	}
	c, err := s.st.ConversationByID(ctx, id)
	if err != nil {
		return err
	}
	if c.Kind == unhidra.KindDM {
		return unhidra.Errorf(protocol.ErrInvalid, "Direct conversations cannot be left.")
	}
	return s.removeMember(ctx, id, actor.ID)
}

// Invite adds a user (by ID or name) to a channel. In a private channel
// only moderators invite; in a public one any member may.
func (s *Service) Invite(ctx context.Context, actor Actor, id, who string) (*unhidra.Membership, error) {
	c, m, err := s.channelFor(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	if m == nil && !actor.Admin {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Only members may invite.")
	}
	if c.Kind == unhidra.KindPrivate && !isModerator(actor, m) {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Only the channel's owner or admins may invite to a private channel.")
	}
	if c.Archived {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "The channel is archived.")
	}
	member, err := s.resolveInvitee(ctx, actor, who)
	if err != nil {
		return nil, err
	}
	if err := s.addMember(ctx, id, member, unhidra.ChanMember); err != nil {
		return nil, err
	}
	return s.st.Membership(ctx, id, member)
}

// resolveInvitee finds who is being invited: a user (by ID or name) or a
// device (by ID), which only its owner or an administrator may add.
func (s *Service) resolveInvitee(ctx context.Context, actor Actor, who string) (string, error) {
	if ids := s.cfg.Identities; ids != nil {
		_, owner, revoked, err := ids.LookupIdentity(ctx, who)
		switch {
		case err == nil && (revoked || (owner != actor.ID && !actor.Admin)):
			// A revoked device, or someone else's: the same answer as a
			// missing one, so IDs cannot be probed.
			return "", unhidra.Errorf(protocol.ErrNotFound, "No such device.")
		case err == nil:
			return who, nil
		case unhidra.ErrorCode(err) != protocol.ErrNotFound:
			return "", err
		}
	}
	u, err := s.resolveUser(ctx, who)
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

// Kick removes a member (moderators only; owners cannot be kicked, and a
// channel admin cannot kick another admin).
func (s *Service) Kick(ctx context.Context, actor Actor, id, member string) error {
	_, m, err := s.channelFor(ctx, actor, id)
	if err != nil {
		return err
	}
	if !isModerator(actor, m) {
		return unhidra.Errorf(protocol.ErrForbidden, "Only the channel's owner or admins may remove members.")
	}
	target, err := s.st.Membership(ctx, id, member)
	if err != nil {
		return err
	}
	if target.Role == unhidra.ChanOwner || (target.Role == unhidra.ChanAdmin && !actor.Admin && m.Role != unhidra.ChanOwner) {
		return unhidra.Errorf(protocol.ErrForbidden, "You cannot remove that member.")
	}
	return s.removeMember(ctx, id, member)
}

// Members lists a conversation's members (members only).
func (s *Service) Members(ctx context.Context, actor Actor, id string) ([]MemberView, error) {
	if !actor.Admin {
		if _, err := s.requireMember(ctx, id, actor.ID); err != nil {
			return nil, err
		}
	}
	ms, err := s.st.Members(ctx, id)
	if err != nil {
		return nil, err
	}
	views := make([]MemberView, len(ms))
	for i, m := range ms {
		views[i] = MemberView{Membership: m, Name: s.names.name(ctx, m.MemberID)}
	}
	return views, nil
}

// MemberView is a membership with the member's name, for member lists.
type MemberView struct {
	*unhidra.Membership
	Name string `json:"name"`
}

// OpenDM returns the DM of the actor and the named users (IDs or names),
// creating it on first use. Up to MaxDMMembers members, the actor included.
func (s *Service) OpenDM(ctx context.Context, actor Actor, with []string) (*unhidra.Conversation, error) {
	if len(with) == 0 || len(with) >= unhidra.MaxDMMembers {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "A direct conversation has 2 to %d members.", unhidra.MaxDMMembers)
	}
	if err := s.mayDM(ctx, actor.ID); err != nil {
		return nil, err
	}
	members := []string{actor.ID}
	for _, w := range with {
		u, err := s.resolveUser(ctx, w)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(members, u.ID) {
			members = append(members, u.ID)
		}
	}
	if len(members) < 2 {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "A direct conversation needs someone else.")
	}
	c, created, err := s.st.OpenDM(ctx, actor.ID, members)
	if err != nil {
		return nil, err
	}
	if created {
		for _, m := range members {
			s.subscribe(m, c.ID)
		}
	}
	return c, nil
}

// resolveUser finds an enabled account by ID or name.
func (s *Service) resolveUser(ctx context.Context, who string) (*unhidra.User, error) {
	notFound := unhidra.Errorf(protocol.ErrNotFound, "No such user.")
	if who == "" || len(who) > unhidra.MaxMemberIDLen || !utf8.ValidString(who) {
		return nil, notFound
	}
	u, err := s.st.UserByID(ctx, who)
	if unhidra.ErrorCode(err) == protocol.ErrNotFound {
		u, err = s.st.UserByName(ctx, who)
	}
	if unhidra.ErrorCode(err) == protocol.ErrNotFound || (err == nil && u.Disabled) {
		return nil, notFound
	}
	return u, err
}

func (s *Service) addMember(ctx context.Context, conv, member, role string) error {
	if _, err := s.st.AddMember(ctx, conv, member, role); err != nil {
		return err
	}
	s.subscribe(member, conv)
	s.publish(conv, memberEvent{Type: protocol.TypeMemberJoined, Channel: conv, Member: member})
	return nil
}

func (s *Service) removeMember(ctx context.Context, conv, member string) error {
	if err := s.st.RemoveMember(ctx, conv, member); err != nil {
		return err
	}
	s.publish(conv, memberEvent{Type: protocol.TypeMemberLeft, Channel: conv, Member: member})
	s.unsubscribe(member, conv)
	return nil
}

// membershipSubject carries membership changes to every node.
const membershipSubject = "chat.membership"

type membershipChange struct {
	Member string `json:"member"`
	Conv   string `json:"conv"`
	Added  bool   `json:"added"`
	// LastSeq is the conversation's last seq when the member was added.
	// Messages after it may be published before another node's connections
	// have joined the topic, so the conversation_added frame carries it and
	// clients fetch what follows it from history.
	LastSeq int64 `json:"last_seq,omitempty"`
}

// subscribe makes every live connection of member, on every node, follow
// conv and tells them about it.
func (s *Service) subscribe(member, conv string) { s.changeMembership(member, conv, true) }

// unsubscribe stops member's live connections following conv.
func (s *Service) unsubscribe(member, conv string) { s.changeMembership(member, conv, false) }

func (s *Service) changeMembership(member, conv string, added bool) {
	change := membershipChange{Member: member, Conv: conv, Added: added}
	if added {
		if c, err := s.st.ConversationByID(s.ctx, conv); err == nil {
			change.LastSeq = c.LastSeq
		}
	}
	data, _ := json.Marshal(change)
	if err := s.router.Bus().Publish(s.ctx, membershipSubject, data); err != nil {
		s.log.Warn("chat: membership change not broadcast; applying it here only", "err", err)
		s.applyMembership(data)
	}
}

// applyMembership carries out a membership change from the bus for this
// node's connections of the member.
func (s *Service) applyMembership(data []byte) {
	var m membershipChange
	if json.Unmarshal(data, &m) != nil || m.Member == "" || m.Conv == "" {
		s.log.Warn("chat: malformed membership change on the bus")
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	s.changes[m.Member]++
	s.members.forget()
	for _, c := range s.hub.Connections(m.Member) {
		if st := s.conns[c.ConnID()]; st != nil {
			s.applyToConn(c, st, m)
		}
	}
}

// applyToConn adds one connection to a conversation or removes it. Every
// node does this for its own connections. A connection gets the frame
// before it joins the topic, so it never sees a message of a conversation
// it has not been told about. s.subsMu is held.
func (s *Service) applyToConn(c hub.Client, st *connState, m membershipChange) {
	if m.Added {
		c.Send(prepare(memberEvent{Type: protocol.TypeConversationAdded, Channel: m.Conv, Member: m.Member, LastSeq: m.LastSeq}))
		st.convs[m.Conv] = struct{}{}
		s.delivery.follow(m.Conv, m.LastSeq)
		s.router.Subscribe(topic(m.Conv), c)
		return
	}
	delete(st.convs, m.Conv)
	s.leave(m.Conv, c)
	c.Send(prepare(memberEvent{Type: protocol.TypeConversationRemoved, Channel: m.Conv, Member: m.Member}))
}

// DMPermitter is implemented by an Identities that lets some of its
// identities (devices) message people directly only with permission.
type DMPermitter interface {
	MayDMPeople(ctx context.Context, id string) (bool, error)
}

// mayDM refuses direct messages from a managed identity (a device) unless
// its owner allowed them; people and bots may always.
func (s *Service) mayDM(ctx context.Context, id string) error {
	if !s.quiet(id) {
		return nil
	}
	p, ok := s.cfg.Identities.(DMPermitter)
	if !ok {
		return errDeviceDM
	}
	allowed, err := p.MayDMPeople(ctx, id)
	if err != nil {
		return err
	}
	if !allowed {
		return errDeviceDM
	}
	return nil
}

var errDeviceDM = unhidra.Errorf(protocol.ErrForbidden, "This device may not send direct messages to people; its owner can allow it.")

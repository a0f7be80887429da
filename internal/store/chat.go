package store

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
)

// AppendRequest is one message to store. ClientID, when set, makes the
// append idempotent per (SenderID, ConversationID, ClientID).
type AppendRequest struct {
	ConversationID string
	SenderID       string
	ClientID       string
	Body           string
}

// AppendResult is the outcome of one AppendRequest. Err holds the
// request's own failure (protocol.ErrNotFound, protocol.ErrForbidden); Duplicate reports that
// ClientID had been used and Message is the original.
type AppendResult struct {
	Message   *unhidra.Message
	Duplicate bool
	Err       error
}

// HistoryQuery selects messages of one conversation by seq. With After (or
// Forward) set it pages forward (oldest first after it); otherwise backward from Before
// (or from the newest). Results are always in ascending seq order.
type HistoryQuery struct {
	ConversationID string
	Before, After  int64 // 0 means unset
	// Forward pages forward from After even when After is 0 (from the
	// first message).
	Forward bool
	Limit   int
}

// ChatStore keeps conversations, memberships and messages.
type ChatStore interface {
	// CreateChannel stores a channel and makes creator its owner. Fills ID
	// and timestamps. Returns protocol.ErrConflict if the name is taken
	// (case-insensitively).
	CreateChannel(ctx context.Context, c *unhidra.Conversation, creator string) error

	// OpenDM returns the DM conversation of exactly these members,
	// creating it (created reports that) if it does not exist. members
	// must be distinct; the store does not validate who they are.
	OpenDM(ctx context.Context, creator string, members []string) (c *unhidra.Conversation, created bool, err error)

	// ConversationByID returns the conversation, or protocol.ErrNotFound.
	ConversationByID(ctx context.Context, id string) (*unhidra.Conversation, error)

	// RenameChannel renames a channel. Returns protocol.ErrNotFound, or protocol.ErrConflict if
	// the name is taken.
	RenameChannel(ctx context.Context, id, name string) (*unhidra.Conversation, error)

	// ArchiveChannel marks a channel archived (read-only). protocol.ErrNotFound.
	ArchiveChannel(ctx context.Context, id string) (*unhidra.Conversation, error)

	// Conversations returns the conversations member belongs to, ordered
	// by ID (direct messages without their Members).
	Conversations(ctx context.Context, member string) ([]*unhidra.ConversationView, error)

	// ConversationPage returns up to limit conversations of member's lists
	// with an ID after after (all when after is ""), ordered by ID: with
	// dms, its direct-message conversations, with their Members; without,
	// the channels it belongs to and the public channels it does not.
	ConversationPage(ctx context.Context, member string, dms bool, after string, limit int) ([]*unhidra.ConversationView, error)

	// ConversationIDs returns the IDs of the conversations member belongs to.
	ConversationIDs(ctx context.Context, member string) ([]string, error)

	// Membership returns member's membership of the conversation, or
	// protocol.ErrNotFound if it is not a member.
	Membership(ctx context.Context, conversationID, member string) (*unhidra.Membership, error)

	// Members returns the conversation's members ordered by member ID.
	Members(ctx context.Context, conversationID string) ([]*unhidra.Membership, error)

	// LastSeqs returns the LastSeq of each of the conversations ids that
	// exist; one that does not has no entry. Any number of ids.
	LastSeqs(ctx context.Context, ids []string) (map[string]int64, error)

	// MemberIDs returns the member IDs of each of the conversations, in no
	// particular order; a conversation without members (or that does not
	// exist) has no entry. Any number of conversations.
	MemberIDs(ctx context.Context, conversationIDs []string) (map[string][]string, error)

	// CoMembers returns the distinct identities sharing at least one
	// conversation with member (member itself excluded).
	CoMembers(ctx context.Context, member string) ([]string, error)

	// AddMember adds member with role. Returns protocol.ErrConflict if it is one
	// already, protocol.ErrNotFound if the conversation does not exist.
	AddMember(ctx context.Context, conversationID, member, role string) (*unhidra.Membership, error)

	// RemoveMember removes member. Returns protocol.ErrNotFound if it was none.
	RemoveMember(ctx context.Context, conversationID, member string) error

	// MarkRead advances member's last read seq to seq (never backwards,
	// never past the conversation's LastSeq) and returns the new value.
	// Returns protocol.ErrNotFound if member is not a member.
	MarkRead(ctx context.Context, conversationID, member string, seq int64) (int64, error)

	// AppendMessages stores a batch in one transaction (group commit):
	// each request gets the conversation's next seq, in request order.
	// A request whose sender is not a member fails alone with protocol.ErrNotFound
	// (protocol.ErrForbidden if the conversation is archived). A request whose
	// ClientID was seen (and not yet expired) returns the original message
	// with Duplicate set and stores nothing. The returned error is set only
	// when the whole batch failed (nothing was stored).
	AppendMessages(ctx context.Context, reqs []AppendRequest) ([]AppendResult, error)

	// MessageByID returns a message, or protocol.ErrNotFound.
	MessageByID(ctx context.Context, id string) (*unhidra.Message, error)

	// EditMessage replaces a live message's body. protocol.ErrNotFound if it does not
	// exist or was deleted.
	EditMessage(ctx context.Context, id, body string) (*unhidra.Message, error)

	// DeleteMessage soft-deletes a message (body cleared, seq kept).
	// protocol.ErrNotFound if it does not exist or was deleted already.
	DeleteMessage(ctx context.Context, id string) (*unhidra.Message, error)

	// History returns up to q.Limit messages (clamped to [1, 200], default
	// 50) and whether more exist in the paging direction.
	History(ctx context.Context, q HistoryQuery) (msgs []*unhidra.Message, hasMore bool, err error)

	// DeleteIdempotencyKeys forgets client IDs recorded before cutoff and
	// returns how many it forgot.
	DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time) (int64, error)
}

package store

import (
	"context"
	"time"
)

// Conversation kinds. Channels are named; DMs are identified by their
// member set (two to MaxDMMembers members).
const (
	KindPublic  = "public"  // anyone may see and join
	KindPrivate = "private" // members only; joined by invitation
	KindDM      = "dm"      // a direct conversation of 2..MaxDMMembers members
)

// Member roles inside a channel.
const (
	ChanOwner  = "owner"
	ChanAdmin  = "admin"
	ChanMember = "member"
)

// Messaging limits shared by every layer.
const (
	MaxBodyChars     = 4000 // characters (runes) of a message body
	MaxChannelName   = 64   // characters of a channel name
	MaxDMMembers     = 8    // members of a group DM, the creator included
	MaxClientIDLen   = 64   // bytes of a client's idempotency id
	MaxMemberIDLen   = 64   // bytes of a member identity
	GeneralChannelID = "chn_general"
	PrefixChannel    = "chn"
	PrefixDM         = "dmc"
	PrefixMessage    = "msg"
)

// Conversation is a channel or a DM. LastSeq is the seq of its newest
// message: seqs are 1, 2, 3, … with no gaps.
type Conversation struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Archived  bool      `json:"archived"`
	CreatedBy string    `json:"created_by"`
	LastSeq   int64     `json:"last_seq"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Membership is one member of a conversation: a user, bot or device ID.
type Membership struct {
	ConversationID string    `json:"conversation_id"`
	MemberID       string    `json:"member_id"`
	Role           string    `json:"role"`
	LastReadSeq    int64     `json:"last_read_seq"`
	JoinedAt       time.Time `json:"joined_at"`
}

// ConversationView is a conversation as one member (or a visitor of a
// public channel) sees it.
type ConversationView struct {
	Conversation
	Member      bool   `json:"member"`
	Role        string `json:"role,omitempty"`
	LastReadSeq int64  `json:"last_read_seq"`
	// Members is filled for DMs only (their members name them).
	Members []string `json:"members,omitempty"`
}

// Message is one stored message. A deleted message keeps its seq (so the
// sequence stays gap-free) and loses its body.
type Message struct {
	ID             string    `json:"message_id"`
	ConversationID string    `json:"channel"`
	Seq            int64     `json:"seq"`
	SenderID       string    `json:"from"`
	Body           string    `json:"body"`
	CreatedAt      time.Time `json:"ts"`
	EditedAt       time.Time `json:"edited_at,omitzero"`
	DeletedAt      time.Time `json:"deleted_at,omitzero"`
}

// AppendRequest is one message to store. ClientID, when set, makes the
// append idempotent per (SenderID, ConversationID, ClientID).
type AppendRequest struct {
	ConversationID string
	SenderID       string
	ClientID       string
	Body           string
}

// AppendResult is the outcome of one AppendRequest. Err holds the
// request's own failure (ENOTFOUND, EFORBIDDEN); Duplicate reports that
// ClientID had been used and Message is the original.
type AppendResult struct {
	Message   *Message
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
	// and timestamps. Returns ECONFLICT if the name is taken
	// (case-insensitively).
	CreateChannel(ctx context.Context, c *Conversation, creator string) error

	// OpenDM returns the DM conversation of exactly these members,
	// creating it (created reports that) if it does not exist. members
	// must be distinct; the store does not validate who they are.
	OpenDM(ctx context.Context, creator string, members []string) (c *Conversation, created bool, err error)

	// ConversationByID returns the conversation, or ENOTFOUND.
	ConversationByID(ctx context.Context, id string) (*Conversation, error)

	// RenameChannel renames a channel. Returns ENOTFOUND, or ECONFLICT if
	// the name is taken.
	RenameChannel(ctx context.Context, id, name string) (*Conversation, error)

	// ArchiveChannel marks a channel archived (read-only). ENOTFOUND.
	ArchiveChannel(ctx context.Context, id string) (*Conversation, error)

	// Conversations returns the conversations member belongs to, plus,
	// when withPublic, the public channels it does not, ordered by ID.
	Conversations(ctx context.Context, member string, withPublic bool) ([]*ConversationView, error)

	// ConversationIDs returns the IDs of the conversations member belongs to.
	ConversationIDs(ctx context.Context, member string) ([]string, error)

	// Membership returns member's membership of the conversation, or
	// ENOTFOUND if it is not a member.
	Membership(ctx context.Context, conversationID, member string) (*Membership, error)

	// Members returns the conversation's members ordered by member ID.
	Members(ctx context.Context, conversationID string) ([]*Membership, error)

	// CoMembers returns the distinct identities sharing at least one
	// conversation with member (member itself excluded).
	CoMembers(ctx context.Context, member string) ([]string, error)

	// AddMember adds member with role. Returns ECONFLICT if it is one
	// already, ENOTFOUND if the conversation does not exist.
	AddMember(ctx context.Context, conversationID, member, role string) (*Membership, error)

	// RemoveMember removes member. Returns ENOTFOUND if it was none.
	RemoveMember(ctx context.Context, conversationID, member string) error

	// MarkRead advances member's last read seq to seq (never backwards,
	// never past the conversation's LastSeq) and returns the new value.
	// Returns ENOTFOUND if member is not a member.
	MarkRead(ctx context.Context, conversationID, member string, seq int64) (int64, error)

	// AppendMessages stores a batch in one transaction (group commit):
	// each request gets the conversation's next seq, in request order.
	// A request whose sender is not a member fails alone with ENOTFOUND
	// (EFORBIDDEN if the conversation is archived). A request whose
	// ClientID was seen (and not yet expired) returns the original message
	// with Duplicate set and stores nothing. The returned error is set only
	// when the whole batch failed (nothing was stored).
	AppendMessages(ctx context.Context, reqs []AppendRequest) ([]AppendResult, error)

	// MessageByID returns a message, or ENOTFOUND.
	MessageByID(ctx context.Context, id string) (*Message, error)

	// EditMessage replaces a live message's body. ENOTFOUND if it does not
	// exist or was deleted.
	EditMessage(ctx context.Context, id, body string) (*Message, error)

	// DeleteMessage soft-deletes a message (body cleared, seq kept).
	// ENOTFOUND if it does not exist or was deleted already.
	DeleteMessage(ctx context.Context, id string) (*Message, error)

	// History returns up to q.Limit messages (clamped to [1, 200], default
	// 50) and whether more exist in the paging direction.
	History(ctx context.Context, q HistoryQuery) (msgs []*Message, hasMore bool, err error)

	// DeleteIdempotencyKeys forgets client IDs recorded before cutoff and
	// returns how many it forgot.
	DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time) (int64, error)
}

package unhidra

import (
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

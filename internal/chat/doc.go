// Package chat is the messaging service: public and private channels with
// roles, direct conversations of two to eight members, the send pipeline,
// history, resume after a reconnect, presence and typing.
//
// # Send pipeline
//
// A send is validated (membership, body of 1..4,000 characters of UTF-8,
// a per-sender rate), then queued for the one writer goroutine. The writer
// takes every send waiting, up to Config.MaxBatch, and stores them in one
// transaction (group commit): each message gets its conversation's next
// gap-free seq. Only after the commit does the writer answer each sender
// (the WebSocket ack) and then publish the messages, in seq order, to the
// hub topic "conv:<id>" that every live connection of every member
// subscribes to. A client id (the frame's "id") makes a send idempotent per
// sender and conversation for Config.IdempotencyTTL, across restarts: a
// retry is answered with the original ack and stores nothing.
//
// # Resume
//
// A connection is subscribed to its conversations when it opens. Resume
// holds the writer's publish lock while it reads and enqueues a backlog, so
// the "resumed" frame of a conversation splits the connection's stream
// exactly: message frames before it have seq ≤ its last_seq and those after
// it seq > last_seq. See docs/protocol-chat.md for the client's rule.
//
// # Presence
//
// Presence is counted per identity over its connections on this node: the
// first connection makes it online, the last one gone makes it offline
// with a last-seen time. Presence and typing go only to identities that
// share a conversation with the subject.
package chat

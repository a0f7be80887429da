// Package hub routes messages to live connections on this node: it knows
// which connections belong to which identity (user, bot or device) and which
// are subscribed to which topics (channels, devices, presence), and delivers
// one already-framed message to all of them.
//
// The hub never touches a socket. It hands the same framed bytes to each
// Client's non-blocking Send; a client whose outbound queue is full is a
// slow consumer and is disconnected with a reconnectable close code, so it
// never delays anyone else. Both indexes are sharded so that connections
// coming and going on different cores do not contend, and large fan-outs are
// split across cores.
package hub

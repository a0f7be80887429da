// Package bot holds the server's built-in bot. A bot is an account like
// any other (role "bot"): it signs in with its own tokens and connects over
// the WebSocket like a person, so it sees exactly what a member of a
// conversation sees and nothing more. The system bot announces members
// joining and leaving, and answers /help, /who, /ping and /summary (an
// extractive summary of the conversation's recent messages from the ML
// workers) in any conversation it belongs to.
package bot

package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/protocol"
)

// Summarizer runs the summarize model (*mlbridge.Supervisor's Infer).
type Summarizer interface {
	Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error)
}

// System is the built-in system bot.
type System struct {
	Client *client.Client
	ML     Summarizer // nil: /summary says it is unavailable
	Log    *slog.Logger

	mu    sync.Mutex
	names map[string]string // identity → display name, learned from members and messages
}

const help = "I am the system bot. Commands: /help (this), /who (who is here and online), /ping (am I alive), /summary (the gist of the last messages)."

// Run serves until ctx ends or the connection is closed for good.
func (s *System) Run(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.names = map[string]string{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Client.Run(ctx) }()
	online := map[string]string{} // identity → status, from presence frames
	for {
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case e := <-s.Client.Events():
			switch {
			case e.Message != nil:
				s.onMessage(ctx, e.Message, online)
			case e.Type == protocol.TypePresence:
				var p struct{ User, Status string }
				if json.Unmarshal(e.Raw, &p) == nil && p.User != "" {
					online[p.User] = p.Status
				}
			case e.Type == protocol.TypePresenceSnapshot:
				var p struct {
					Users []struct{ User, Status string } `json:"users"`
				}
				json.Unmarshal(e.Raw, &p)
				for _, u := range p.Users {
					online[u.User] = u.Status
				}
			case e.Type == protocol.TypeMemberJoined || e.Type == protocol.TypeMemberLeft:
				var m struct{ Channel, Member string }
				if json.Unmarshal(e.Raw, &m) == nil && m.Member != s.Client.User().ID {
					verb := "joined"
					if e.Type == protocol.TypeMemberLeft {
						verb = "left"
					}
					s.reply(ctx, m.Channel, fmt.Sprintf("%s %s the channel.", s.name(ctx, m.Member), verb))
				}
			}
		}
	}
}

func (s *System) name(ctx context.Context, id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.names[id]; ok {
		return n
	}
	return id
}

func (s *System) remember(id, name string) {
	if name == "" {
		return
	}
	s.mu.Lock()
	s.names[id] = name
	s.mu.Unlock()
}

func (s *System) reply(ctx context.Context, conv, text string) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.Client.Send(sctx, conv, text); err != nil {
		s.Log.Warn("system bot could not reply", "conversation", conv, "err", err)
	}
}

func (s *System) onMessage(ctx context.Context, m *client.Message, online map[string]string) {
	s.remember(m.From, m.FromName)
	if m.From == s.Client.User().ID || !strings.HasPrefix(m.Body, "/") {
		return // never answer itself, only commands
	}
	cmd, _, _ := strings.Cut(strings.TrimSpace(m.Body), " ")
	switch strings.ToLower(cmd) {
	case "/help":
		s.reply(ctx, m.Channel, help)
	case "/ping":
		lag := time.Since(m.TS).Round(time.Millisecond)
		s.reply(ctx, m.Channel, fmt.Sprintf("pong (your message reached me %v after it was stored)", max(lag, 0)))
	case "/who":
		s.reply(ctx, m.Channel, s.who(ctx, m.Channel, online))
	case "/summary":
		s.reply(ctx, m.Channel, s.summary(ctx, m.Channel, m.Seq))
	}
}

func (s *System) who(ctx context.Context, conv string, online map[string]string) string {
	var out struct {
		Members []struct {
			MemberID string `json:"member_id"`
		} `json:"members"`
	}
	if err := s.Client.Get(ctx, "/api/v1/channels/"+url.PathEscape(conv)+"/members", &out); err != nil {
		return "I could not list the members: " + err.Error()
	}
	var here, away, off []string
	for _, m := range out.Members {
		if m.MemberID == s.Client.User().ID {
			continue
		}
		n := s.name(ctx, m.MemberID)
		switch online[m.MemberID] {
		case "online":
			here = append(here, n)
		case "away":
			away = append(away, n)
		default:
			off = append(off, n)
		}
	}
	return fmt.Sprintf("%d members. Online: %s. Away: %s. Offline: %s.", len(out.Members)-1, list(here), list(away), list(off))
}

func list(names []string) string {
	if len(names) == 0 {
		return "nobody"
	}
	return strings.Join(names, ", ")
}

// summary asks the summarize model about the messages before seq.
func (s *System) summary(ctx context.Context, conv string, seq int64) string {
	if s.ML == nil {
		return "Summaries need the ML workers, which are not running on this server."
	}
	msgs, _, err := s.Client.HistoryBefore(ctx, conv, seq, 100)
	if err != nil {
		return "I could not read the history: " + err.Error()
	}
	type in struct {
		From string `json:"from"`
		Body string `json:"body"`
	}
	var input struct {
		Messages     []in `json:"messages"`
		MaxSentences int  `json:"max_sentences"`
	}
	input.MaxSentences = 3
	for _, m := range msgs {
		if m.From == s.Client.User().ID || m.Deleted || strings.HasPrefix(m.Body, "/") {
			continue
		}
		input.Messages = append(input.Messages, in{From: s.name(ctx, m.From), Body: m.Body})
	}
	if len(input.Messages) == 0 {
		return "There is nothing to summarize yet."
	}
	data, _ := json.Marshal(input)
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := s.ML.Infer(ictx, "summarize", data)
	if err != nil {
		return "The summarizer failed: " + err.Error()
	}
	var res struct {
		Summary string `json:"summary"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Summary == "" {
		return "The summarizer had nothing to say."
	}
	return fmt.Sprintf("Summary of the last %d messages: %s", len(input.Messages), res.Summary)
}

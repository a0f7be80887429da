package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/protocol"
)

const chatHelp = `Commands:
  <text>                  send to the current conversation
  /channels               list your channels (and public ones you can join)
  /switch NAME            make NAME the current conversation (#name or a DM's id)
  /join NAME              join a public channel and switch to it
  /create NAME [private]  create a channel
  /leave                  leave the current channel
  /dm USER TEXT           send a direct message (opens the conversation)
  /history [N]            show the last N messages of the current conversation
  /more [N]               scroll further back: N messages before those shown
  /who                    members of the current conversation
  /help                   this text
  /quit                   leave the program`

// runChat is a line-oriented terminal client: it signs in, follows every
// conversation live, reconnects and resumes by itself, and reads commands
// and messages from standard input.
func runChat(ctx context.Context, e env, args []string) error {
	var target benchTarget
	fs := newFlagSet("chat", "chat --user NAME [flags]", e.stderr)
	target.flags(fs)
	passwordStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if target.user == "" {
		return usagef("--user is required")
	}
	tlsCfg, err := target.tlsConfig()
	if err != nil {
		return err
	}
	in := bufio.NewReader(io.LimitReader(e.stdin, 64<<20))
	password, err := chatPassword(e, in, *passwordStdin)
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{BaseURL: target.url, TLS: tlsCfg, Name: target.user, Password: password,
		Log: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return usagef("%v", err)
	}
	defer c.Close()
	if err := c.Login(ctx); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	t := &terminal{c: c, out: e.stdout, names: map[string]string{}, convs: map[string]string{}, oldest: map[string]int64{}}
	if err := t.refresh(ctx); err != nil {
		return err
	}
	fmt.Fprintf(t.out, "signed in as %s; current conversation: %s (/help for commands)\n", c.User().Name, t.label(t.current))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	go t.printEvents(ctx)
	select {
	case <-c.Connected():
	case err := <-runErr:
		return fmt.Errorf("connect: %w", err)
	case <-ctx.Done():
		return nil
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		for {
			line, err := in.ReadString('\n')
			if line = strings.TrimRight(line, "\r\n"); line != "" {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cancel()
				<-runErr
				return nil
			}
			if quit := t.command(ctx, line); quit {
				cancel()
				<-runErr
				return nil
			}
		case err := <-runErr:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("connection: %w", err)
		}
	}
}

func chatPassword(e env, in *bufio.Reader, fromStdin bool) (string, error) {
	if pw := e.getenv("UNHIDRA_PASSWORD"); pw != "" {
		return pw, nil
	}
	if f, ok := e.stdin.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, "Password: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		return string(pw), err
	}
	line, err := in.ReadString('\n')
	if line = strings.TrimRight(line, "\r\n"); line == "" {
		return "", usagef("no password (set UNHIDRA_PASSWORD, or give it on the first line with --password-stdin): %v", err)
	}
	return line, nil
}

// terminal is the chat session's view state.
type terminal struct {
	c   *client.Client
	out io.Writer

	mu      sync.Mutex
	current string            // conversation id; guarded by mu
	convs   map[string]string // id → label; guarded by mu
	names   map[string]string // user id → name; guarded by mu
	listed  []client.Channel  // guarded by mu
	oldest  map[string]int64  // conversation → oldest seq shown by /history; guarded by mu
}

type dm struct {
	client.Channel
	Members []string `json:"members"`
}

// refresh reloads the conversation list.
func (t *terminal) refresh(ctx context.Context) error {
	chans, err := t.c.Channels(ctx)
	if err != nil {
		return fmt.Errorf("list channels: %w", err)
	}
	var dms struct {
		DMs []dm `json:"dms"`
	}
	t.c.Get(ctx, "/api/v1/dms", &dms)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.listed = chans
	for _, ch := range chans {
		t.convs[ch.ID] = "#" + ch.Name
		if t.current == "" && ch.Member && ch.Name == "general" {
			t.current = ch.ID
		}
	}
	for _, d := range dms.DMs {
		t.convs[d.ID] = "@" + d.ID
	}
	return nil
}

// setCurrent switches the conversation that plain lines are sent to.
func (t *terminal) setCurrent(conv string) {
	t.mu.Lock()
	t.current = conv
	t.mu.Unlock()
}

func (t *terminal) label(conv string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.convs[conv]; ok {
		return l
	}
	if conv == "" {
		return "(none)"
	}
	return conv
}

// resolve finds a conversation by #name, name or id.
func (t *terminal) resolve(name string) (client.Channel, bool) {
	name = strings.TrimPrefix(name, "#")
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ch := range t.listed {
		if strings.EqualFold(ch.Name, name) || ch.ID == name {
			return ch, true
		}
	}
	if _, ok := t.convs[name]; ok {
		return client.Channel{ID: name, Member: true}, true
	}
	return client.Channel{}, false
}

func (t *terminal) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.out, format, args...)
}

func (t *terminal) printMessage(m *client.Message) {
	from := senderLabel(m)
	body := m.Body
	if m.Deleted {
		body = "(deleted)"
	}
	// Terminal control characters in a message could rewrite the screen:
	// show them as escapes.
	body = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return '?'
		}
		return r
	}, body)
	t.printf("[%s] %s %s: %s\n", t.label(m.Channel), m.TS.Local().Format("15:04"), from, body)
}

// senderLabel is how a sender is shown: devices and bots are marked, so
// that neither passes for a person whatever its name. Control characters
// in names cannot reach the terminal (names refuse them).
func senderLabel(m *client.Message) string {
	from := m.FromName
	if from == "" {
		from = m.From
	}
	switch m.FromKind {
	case "device":
		return from + " [device]"
	case "bot":
		return from + " [bot]"
	}
	return from
}

func (t *terminal) printEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-t.c.Events():
			switch {
			case e.Message != nil:
				t.printMessage(e.Message)
			case e.Type == protocol.TypeConversationAdded:
				t.refresh(ctx)
			case e.Type == protocol.TypeMessageEdited, e.Type == protocol.TypeMessageDeleted, e.Type == protocol.TypeMemberJoined, e.Type == protocol.TypeMemberLeft:
				var f map[string]any
				json.Unmarshal(e.Raw, &f)
				t.printf("* %s in %v\n", strings.ReplaceAll(e.Type, "_", " "), t.label(fmt.Sprint(f["channel"])))
			}
		}
	}
}

// command handles one input line; it reports whether to quit.
func (t *terminal) command(ctx context.Context, line string) (quit bool) {
	if !strings.HasPrefix(line, "/") {
		t.mu.Lock()
		conv := t.current
		t.mu.Unlock()
		if conv == "" {
			t.printf("no current conversation: /switch or /join one\n")
			return false
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := t.c.Send(sctx, conv, line); err != nil {
			t.printf("not sent: %v\n", err)
		}
		return false
	}
	cmd, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimSpace(rest)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch cmd {
	case "/quit", "/exit":
		return true
	case "/help":
		t.printf("%s\n", chatHelp)
	case "/channels":
		if err := t.refresh(rctx); err != nil {
			t.printf("%v\n", err)
			return false
		}
		t.mu.Lock()
		list := append([]client.Channel(nil), t.listed...)
		t.mu.Unlock()
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		for _, ch := range list {
			state := "joined"
			if !ch.Member {
				state = "public, not joined"
			}
			t.printf("#%s  %s  unread %d\n", ch.Name, state, ch.Unread)
		}
	case "/switch", "/join":
		ch, ok := t.resolve(rest)
		if !ok {
			t.refresh(rctx)
			if ch, ok = t.resolve(rest); !ok {
				t.printf("no such conversation: %s\n", rest)
				return false
			}
		}
		if !ch.Member {
			if cmd != "/join" {
				t.printf("%s is not joined: /join %s\n", rest, rest)
				return false
			}
			if err := t.c.Post(rctx, "/api/v1/channels/"+url.PathEscape(ch.ID)+"/join", nil, nil); err != nil {
				t.printf("join: %v\n", err)
				return false
			}
			t.refresh(rctx)
		}
		t.setCurrent(ch.ID)
		t.printf("now in %s\n", t.label(ch.ID))
	case "/create":
		name, private, _ := strings.Cut(rest, " ")
		var ch client.Channel
		if err := t.c.Post(rctx, "/api/v1/channels", map[string]any{"name": name, "private": strings.TrimSpace(private) == "private"}, &ch); err != nil {
			t.printf("create: %v\n", err)
			return false
		}
		t.refresh(rctx)
		t.setCurrent(ch.ID)
		t.printf("created and now in #%s\n", ch.Name)
	case "/leave":
		t.mu.Lock()
		conv := t.current
		t.mu.Unlock()
		if err := t.c.Post(rctx, "/api/v1/channels/"+url.PathEscape(conv)+"/leave", nil, nil); err != nil {
			t.printf("leave: %v\n", err)
			return false
		}
		t.setCurrent("")
		t.refresh(rctx)
		t.printf("left %s\n", t.label(conv))
	case "/dm":
		to, text, ok := strings.Cut(rest, " ")
		if !ok || strings.TrimSpace(text) == "" {
			t.printf("usage: /dm USER TEXT\n")
			return false
		}
		ack, err := t.c.SendDirect(rctx, to, strings.TrimSpace(text))
		if err != nil {
			t.printf("not sent: %v\n", err)
			return false
		}
		_ = ack
		t.refresh(rctx)
	case "/history", "/more":
		n := 20
		fmt.Sscan(rest, &n)
		n = min(max(n, 1), 200)
		t.mu.Lock()
		conv, before := t.current, int64(0)
		if cmd == "/more" {
			before = t.oldest[conv]
		}
		t.mu.Unlock()
		if cmd == "/more" && before == 0 {
			t.printf("nothing to scroll: /history first\n")
			return false
		}
		if before == 1 {
			t.printf("(this is the beginning of the conversation)\n")
			return false
		}
		msgs, more, err := t.c.HistoryBefore(rctx, conv, before, n)
		if err != nil {
			t.printf("history: %v\n", err)
			return false
		}
		for i := range msgs {
			msgs[i].Channel = conv
			t.printMessage(&msgs[i])
		}
		if len(msgs) > 0 {
			t.mu.Lock()
			t.oldest[conv] = msgs[0].Seq
			t.mu.Unlock()
		}
		if more {
			t.printf("(older messages: /more)\n")
		} else {
			t.printf("(this is the beginning of the conversation)\n")
		}
	case "/who":
		t.mu.Lock()
		conv := t.current
		t.mu.Unlock()
		var out struct {
			Members []struct {
				MemberID string `json:"member_id"`
				Role     string `json:"role"`
			} `json:"members"`
		}
		if err := t.c.Get(rctx, "/api/v1/channels/"+url.PathEscape(conv)+"/members", &out); err != nil {
			t.printf("who: %v\n", err)
			return false
		}
		for _, m := range out.Members {
			t.printf("%s (%s)\n", m.MemberID, m.Role)
		}
	default:
		t.printf("unknown command %s (/help)\n", cmd)
	}
	return false
}

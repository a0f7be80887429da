package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/unhidra/unhidra/protocol"
)

// terminal reports whether a close code means "do not reconnect".
func terminal(code websocket.StatusCode) bool { return !protocol.Reconnectable(int(code)) }

// Run keeps a connection up until ctx ends or the server closes it for
// good (ErrTerminal). It blocks; run it in its own goroutine.
func (c *Client) Run(ctx context.Context) error {
	bo := c.cfg.Backoff
	for {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrTerminal) {
			return err
		}
		var ce *Error
		if errors.As(err, &ce) && ce.Status == 401 {
			// The access token was refused: get a new one; if the refresh
			// token is dead too, give up.
			if rerr := c.refreshTokens(ctx); rerr != nil {
				return fmt.Errorf("%w: %v", ErrTerminal, rerr)
			}
		}
		if time.Since(start) > time.Minute {
			bo.Reset() // it was a good connection: start the backoff over
		}
		delay := bo.Next()
		c.log.Info("reconnecting", "in", delay, "after", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// session runs one connection until it drops.
func (c *Client) session(ctx context.Context) error {
	tok, err := c.token(ctx)
	if err != nil {
		return err
	}
	wsURL := "ws" + strings.TrimPrefix(c.cfg.BaseURL, "http") + "/ws"
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, res, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: c.http, Subprotocols: []string{protocol.Subprotocol, protocol.BearerPrefix + tok}})
	cancel()
	if err != nil {
		if res != nil && res.StatusCode == 401 {
			return &Error{Status: 401, Code: protocol.ErrUnauthorized, Message: err.Error()}
		}
		return fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	defer conn.CloseNow()
	if _, _, err := conn.Read(ctx); err != nil { // welcome
		return fmt.Errorf("welcome: %w", err)
	}
	c.mu.Lock()
	c.conn = conn
	close(c.connCh)
	positions := make(map[string]int64, len(c.pos))
	for conv, seq := range c.pos {
		positions[conv] = seq
	}
	pending := make([]*pendingReq, 0, len(c.pending))
	for _, p := range c.pending {
		pending = append(pending, p)
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.conn = nil
		c.connCh = make(chan struct{})
		c.mu.Unlock()
	}()

	sctx, stop := context.WithCancel(ctx)
	defer func() { stop(); c.bg.Wait() }() // the session's helpers end with it
	c.spawn(func() { c.keepTokenFresh(sctx, conn) })
	// Ask for what was missed, then re-send what was never acknowledged
	// (same ids: the server stores each once).
	if len(positions) > 0 {
		// Until a conversation's "resumed" frame arrives, its live frames
		// are held: the server guarantees they are all covered by the
		// backlog (or the history pages up to last_seq).
		c.mu.Lock()
		for conv := range positions {
			c.resuming[conv] = true
		}
		c.mu.Unlock()
		c.write(sctx, conn, map[string]any{"type": protocol.TypeResume, "id": newID(), "positions": positions})
	}
	for _, p := range pending {
		conn.Write(sctx, websocket.MessageText, p.frame)
	}
	for {
		_, data, err := conn.Read(sctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && terminal(ce.Code) {
				return fmt.Errorf("%w: %d %s", ErrTerminal, ce.Code, ce.Reason)
			}
			return err
		}
		c.handleFrame(sctx, data)
	}
}

func (c *Client) spawn(f func()) {
	c.bg.Add(1)
	go func() { defer c.bg.Done(); f() }()
}

func (c *Client) write(ctx context.Context, conn *websocket.Conn, v any) error {
	data, _ := json.Marshal(v)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return conn.Write(wctx, websocket.MessageText, data)
}

// keepTokenFresh sends a fresh access token before the current one
// expires, so the server does not close the connection (4005).
func (c *Client) keepTokenFresh(ctx context.Context, conn *websocket.Conn) {
	for {
		c.mu.Lock()
		until := time.Until(c.expires) - 2*time.Minute
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(until, 5*time.Second)):
		}
		if err := c.refreshTokens(ctx); err != nil {
			c.log.Warn("token refresh failed", "err", err)
			continue
		}
		c.mu.Lock()
		tok := c.access
		c.mu.Unlock()
		c.write(ctx, conn, map[string]any{"type": protocol.TypeRefresh, "id": newID(), "token": tok})
	}
}

// handleFrame routes one frame: replies to their waiters, messages through
// the ordering logic, the rest to the application.
func (c *Client) handleFrame(ctx context.Context, data []byte) {
	var head struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	if json.Unmarshal(data, &head) != nil {
		return
	}
	if head.ID != "" && (head.Type == protocol.TypeAck || head.Type == protocol.TypeError || head.Type == protocol.TypeHistory) {
		c.mu.Lock()
		p := c.pending[head.ID]
		delete(c.pending, head.ID)
		c.mu.Unlock()
		if p != nil {
			p.reply <- append(json.RawMessage(nil), data...)
			return
		}
	}
	switch head.Type {
	case protocol.TypeMessage:
		var m Message
		if json.Unmarshal(data, &m) == nil && m.Channel != "" && m.Seq > 0 {
			c.deliver(ctx, &m)
			return
		}
	case protocol.TypeConversationAdded:
		// Messages after last_seq may have been sent before this
		// connection joined the conversation's stream: fetch them.
		var a struct {
			Channel string `json:"channel"`
			LastSeq int64  `json:"last_seq"`
		}
		if json.Unmarshal(data, &a) == nil && a.Channel != "" {
			c.mu.Lock()
			if _, known := c.pos[a.Channel]; !known {
				c.pos[a.Channel] = a.LastSeq
			}
			pos := c.pos[a.Channel]
			c.mu.Unlock()
			// The application hears of the conversation before any of
			// its messages, whichever goroutine runs first.
			c.emit(ctx, Event{Type: head.Type, Raw: append(json.RawMessage(nil), data...)})
			c.spawn(func() { c.catchUp(ctx, map[string]int64{a.Channel: pos}) })
			return
		}
	case protocol.TypeResumed:
		var r struct {
			Channel   string    `json:"channel"`
			Recovered bool      `json:"recovered"`
			Reason    string    `json:"reason"`
			LastSeq   int64     `json:"last_seq"`
			Messages  []Message `json:"messages"`
		}
		if json.Unmarshal(data, &r) == nil && r.Channel != "" {
			c.resumed(ctx, r.Channel, r.Recovered, r.Reason, r.Messages)
			return
		}
	}
	c.emit(ctx, Event{Type: head.Type, Raw: append(json.RawMessage(nil), data...)})
}

func (c *Client) emit(ctx context.Context, e Event) {
	select {
	case c.events <- e:
	case <-ctx.Done():
	}
}

// resumed applies a conversation's resume answer: the backlog in order,
// or, when the server could not send it all, the history pages; then the
// live frames held meanwhile.
func (c *Client) resumed(ctx context.Context, conv string, recovered bool, reason string, backlog []Message) {
	for i := range backlog {
		backlog[i].Type, backlog[i].Channel = protocol.TypeMessage, conv
		c.deliverInOrder(ctx, &backlog[i])
	}
	c.mu.Lock()
	delete(c.resuming, conv)
	held := len(c.ahead[conv]) > 0
	c.mu.Unlock()
	if !recovered && reason != protocol.ResumeNotMember {
		c.spawn(func() { c.catchUp(ctx, map[string]int64{conv: c.position(conv)}) })
		return
	}
	if held {
		c.startFill(ctx, conv)
	}
}

func (c *Client) position(conv string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos[conv]
}

func (c *Client) startFill(ctx context.Context, conv string) {
	c.mu.Lock()
	start := !c.filling[conv]
	c.filling[conv] = true
	c.mu.Unlock()
	if start {
		c.spawn(func() { c.fill(ctx, conv) })
	}
}

// deliver emits m if it is the next of its conversation, holds it if it
// arrived ahead of a gap (and starts filling the gap from history) or while
// the conversation is resuming, and drops it if it was already emitted.
func (c *Client) deliver(ctx context.Context, m *Message) {
	c.mu.Lock()
	last, known := c.pos[m.Channel]
	switch {
	case known && m.Seq <= last:
		c.mu.Unlock()
		return // a duplicate (resume overlap, retry)
	case c.resuming[m.Channel]:
		if c.ahead[m.Channel] == nil {
			c.ahead[m.Channel] = map[int64]*Message{}
		}
		c.ahead[m.Channel][m.Seq] = m
		c.mu.Unlock()
		return
	case known && m.Seq > last+1:
		if c.ahead[m.Channel] == nil {
			c.ahead[m.Channel] = map[int64]*Message{}
		}
		c.ahead[m.Channel][m.Seq] = m
		c.mu.Unlock()
		c.startFill(ctx, m.Channel)
		return
	}
	ready := c.advance(m)
	c.mu.Unlock()
	for _, r := range ready {
		c.emit(ctx, Event{Type: protocol.TypeMessage, Message: r})
	}
}

// advance records m as emitted and collects the held messages that now
// follow without a gap. Called with c.mu held.
func (c *Client) advance(m *Message) []*Message {
	out := []*Message{m}
	c.pos[m.Channel] = m.Seq
	held := c.ahead[m.Channel]
	for next := m.Seq + 1; held[next] != nil; next++ {
		out = append(out, held[next])
		delete(held, next)
		c.pos[m.Channel] = next
	}
	return out
}

// fill fetches from history what is missing before the messages held
// for conv, which releases them; one fill per conversation at a time.
func (c *Client) fill(ctx context.Context, conv string) {
	defer func() {
		c.mu.Lock()
		delete(c.filling, conv)
		c.mu.Unlock()
	}()
	for {
		c.mu.Lock()
		after, held := c.pos[conv], len(c.ahead[conv])
		c.mu.Unlock()
		if held == 0 {
			return
		}
		msgs, _, err := c.HistoryAfter(ctx, conv, after, 200)
		if err != nil || len(msgs) == 0 {
			if err != nil {
				c.log.Warn("filling a gap from history", "conversation", conv, "err", err)
			}
			return
		}
		sort.Slice(msgs, func(i, j int) bool { return msgs[i].Seq < msgs[j].Seq })
		for i := range msgs {
			msgs[i].Type = protocol.TypeMessage
			c.deliverInOrder(ctx, &msgs[i])
		}
	}
}

// deliverInOrder is deliver for messages known to have no gap before them
// (history pages): it never starts another fill.
func (c *Client) deliverInOrder(ctx context.Context, m *Message) {
	c.mu.Lock()
	if last, ok := c.pos[m.Channel]; ok && m.Seq <= last {
		c.mu.Unlock()
		return
	}
	delete(c.ahead[m.Channel], m.Seq)
	ready := c.advance(m)
	c.mu.Unlock()
	for _, r := range ready {
		c.emit(ctx, Event{Type: protocol.TypeMessage, Message: r})
	}
}

// catchUp brings every known conversation up to date from history after
// a reconnect (the resume answer may have been partial).
func (c *Client) catchUp(ctx context.Context, positions map[string]int64) {
	for conv, seq := range positions {
		for {
			msgs, more, err := c.HistoryAfter(ctx, conv, seq, 200)
			if err != nil {
				c.log.Warn("catching up", "conversation", conv, "err", err)
				break
			}
			for i := range msgs {
				msgs[i].Type = protocol.TypeMessage
				c.deliverInOrder(ctx, &msgs[i])
				seq = max(seq, msgs[i].Seq)
			}
			if !more || len(msgs) == 0 {
				break
			}
		}
		c.startFill(ctx, conv) // anything held beyond what history had
	}
}

// Follow starts tracking a conversation from seq (the last one the
// application has shown, e.g. from a history page), so that later
// messages are delivered in order from there.
func (c *Client) Follow(conv string, seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.pos[conv]; !ok || seq > cur {
		c.pos[conv] = seq
	}
}

// Request sends a frame with a fresh id and waits for the ack or error that
// answers it. If the connection drops first, the frame is sent again (with
// the same id) after reconnecting, until ctx ends.
func (c *Client) Request(ctx context.Context, frame map[string]any) (json.RawMessage, error) {
	id, _ := frame["id"].(string)
	if id == "" {
		id = newID()
		frame["id"] = id
	}
	data, err := json.Marshal(frame)
	if err != nil {
		return nil, err
	}
	p := &pendingReq{frame: data, reply: make(chan json.RawMessage, 1)}
	c.mu.Lock()
	c.pending[id] = p
	conn, up := c.conn, c.connCh
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if conn != nil {
		conn.Write(ctx, websocket.MessageText, data) // on failure, the reconnect re-sends it
	} else {
		select { // not connected: the next session sends pending frames
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case reply := <-p.reply:
		var e struct {
			Type string `json:"type"`
			Error
		}
		json.Unmarshal(reply, &e)
		if e.Type == protocol.TypeError {
			return reply, &e.Error
		}
		return reply, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send posts body to a conversation and returns the acknowledgement: the
// message is stored when this returns without error.
func (c *Client) Send(ctx context.Context, conv, body string) (Ack, error) {
	return c.send(ctx, map[string]any{"type": protocol.TypeSend, "channel": conv, "body": body})
}

// SendDirect posts body to a direct conversation with a user (id or name).
func (c *Client) SendDirect(ctx context.Context, to, body string) (Ack, error) {
	return c.send(ctx, map[string]any{"type": protocol.TypeSend, "to": to, "body": body})
}

func (c *Client) send(ctx context.Context, frame map[string]any) (Ack, error) {
	var ack Ack
	reply, err := c.Request(ctx, frame)
	if err != nil {
		return ack, err
	}
	err = json.Unmarshal(reply, &ack)
	return ack, err
}

// Connected returns a channel closed once a connection is up.
func (c *Client) Connected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connCh
}

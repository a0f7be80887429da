package chat_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/protocol"
)

const general = unhidra.GeneralChannelID

func TestSend_AckThenFanOutToEveryConnection(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	ann1, ann2, bob1 := h.dial(t, ann), h.dial(t, ann), h.dial(t, bob)

	ann1.send(map[string]any{"type": "send", "id": "m1", "channel": general, "body": "héllo 👋"})
	// On the sender's connection the ack comes before the message itself.
	var ack frame
	for ack == nil {
		select {
		case f := <-ann1.frames:
			switch f.str("type") {
			case "ack":
				ack = f
			case "message":
				t.Fatalf("message before its ack: %v", f)
			}
		case <-time.After(wait):
			t.Fatal("no ack")
		}
	}
	if ack.str("id") != "m1" || ack.num("seq") != 1 || !strings.HasPrefix(ack.str("message_id"), "msg_") {
		t.Fatalf("ack = %v", ack)
	}
	for _, c := range []*client{ann1, ann2, bob1} {
		m := c.expect("message", nil)
		if m.str("channel") != general || m.num("seq") != 1 || m.str("from") != ann.ID || m.str("body") != "héllo 👋" ||
			m.str("message_id") != ack.str("message_id") {
			t.Fatalf("delivered = %v", m)
		}
		if _, err := time.Parse(time.RFC3339, m.str("ts")); err != nil {
			t.Fatalf("ts %q is not RFC 3339: %v", m.str("ts"), err)
		}
	}
}

func TestSend_OrderedAndGapFreeUnderConcurrentSenders(t *testing.T) {
	for _, writers := range []int{1, 4} {
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) { testOrdered(t, writers) })
	}
}

// testOrdered has senders alternate between two channels (which may map
// to different writers) and checks, per channel, that a member receives
// seq 1, 2, 3, … and each sender's messages in the order it sent them.
func testOrdered(t *testing.T, writers int) {
	h := newHarness(t, chat.Config{Writers: writers})
	const senders, each = 4, 25
	owner := h.user("watcher", unhidra.RoleMember)
	other, err := h.svc.CreateChannel(context.Background(), owner, "other", false)
	if err != nil {
		t.Fatal(err)
	}
	channels := []string{general, other.ID}
	watcher := h.dial(t, owner)
	var wg sync.WaitGroup
	for i := range senders {
		a := h.user(fmt.Sprintf("s%d", i), unhidra.RoleMember)
		if err := h.svc.Join(context.Background(), a, other.ID); err != nil {
			t.Fatal(err)
		}
		c := h.dial(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Pipelined: all frames first; the acks are not awaited.
			for j := range each {
				c.send(map[string]any{"type": "send", "id": fmt.Sprintf("%d-%d", i, j), "channel": channels[j%2], "body": fmt.Sprintf("%s %d", a.ID, j)})
			}
		}()
	}
	wg.Wait()
	wantSeq := map[string]int64{} // channel → the seq due next
	next := map[string]int{}      // sender → the index its next message must carry
	for range senders * each {
		m := watcher.expect("message", nil)
		ch := m.str("channel")
		wantSeq[ch]++
		if m.num("seq") != wantSeq[ch] {
			t.Fatalf("%s: got seq %d, want %d: out of order, gap or duplicate", ch, m.num("seq"), wantSeq[ch])
		}
		var from string
		var idx int
		fmt.Sscanf(m.str("body"), "%s %d", &from, &idx)
		// A connection's frames are handled one at a time and a send
		// returns after its fan-out, so even across channels (and writers)
		// a sender's messages arrive in the order it sent them.
		if idx != next[from] {
			t.Fatalf("%s's message %d arrived when %d was due", from, idx, next[from])
		}
		next[from]++
	}
}

func TestSend_RetryIsIdempotentAcrossRestart(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	a, b := h.dial(t, ann), h.dial(t, bob)
	watcher := h.dial(t, h.user("watcher", unhidra.RoleMember))
	first := a.sendMsg("same", general, "once")
	again := a.sendMsg("same", general, "once, retried")
	if again.str("message_id") != first.str("message_id") || again.num("seq") != first.num("seq") {
		t.Fatalf("retry ack %v differs from first %v", again, first)
	}
	// Another sender's identical id is its own message.
	other := b.sendMsg("same", general, "bob's")
	if other.num("seq") != 2 {
		t.Fatalf("bob's seq = %d, want 2", other.num("seq"))
	}
	// The watcher saw exactly seq 1 then 2: the retry was not fanned out.
	if m := watcher.expect("message", nil); m.num("seq") != 1 || m.str("body") != "once" {
		t.Fatalf("first delivered = %v", m)
	}
	if m := watcher.expect("message", nil); m.num("seq") != 2 {
		t.Fatalf("second delivered = %v (the retry was delivered again?)", m)
	}
	// A new service on the same database (a restart) still knows the id.
	svc2 := chat.New(h.db, hub.NewRouter(hub.New(), &local.Bus{}, nil), chat.Config{}, nil)
	defer svc2.Close()
	m, dup, err := svc2.Send(context.Background(), ann, chat.SendInput{Channel: general, Body: "x", ClientID: "same"}, nil)
	if err != nil || !dup || m.ID != first.str("message_id") {
		t.Fatalf("after restart: %+v dup=%v err=%v", m, dup, err)
	}
	page, err := h.svc.History(context.Background(), ann, general, nil, nil, 0)
	if err != nil || len(page.Messages) != 2 {
		t.Fatalf("history holds %d messages, want 2: %v", len(page.Messages), err)
	}
}

func TestMembership_NonMemberCannotReadPostOrSee(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ctx := context.Background()
	ann, eve := h.user("ann", unhidra.RoleMember), h.user("eve", unhidra.RoleMember)
	ch, err := h.svc.CreateChannel(ctx, ann, "secret", true)
	if err != nil {
		t.Fatal(err)
	}
	// eve shares no conversation with ann.
	if err := h.svc.Leave(ctx, eve, general); err != nil {
		t.Fatal(err)
	}
	a := h.dial(t, ann)
	e := h.dial(t, eve)
	a.sendMsg("s1", ch.ID, "for members only")
	for _, f := range []map[string]any{
		{"type": "send", "channel": ch.ID, "body": "let me in"},
		{"type": "history", "channel": ch.ID},
		{"type": "typing", "channel": ch.ID},
		{"type": "send", "channel": general, "body": "left general"},
		{"type": "edit", "message_id": "msg_nope", "body": "x"},
	} {
		id := nextID()
		f["id"] = id
		e.send(f)
		wantError(t, e.reply(id), "not_found")
	}
	if _, err := h.svc.Members(ctx, eve, ch.ID); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("members for a non-member: %v", err)
	}
	if err := h.svc.Join(ctx, eve, ch.ID); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("joining a private channel: %v", err)
	}
	// eve received no message and no presence of ann: she learns only of
	// her own presence. Probe the stream's end with a ping.
	a.sendMsg("s2", ch.ID, "still secret")
	e.send(map[string]any{"type": "ping", "id": "end"})
	for {
		f := <-e.frames
		if f.str("type") == "pong" {
			break
		}
		if f.str("type") == "message" || f.str("type") == "typing" || (f.str("type") == "presence" && f.str("user") != eve.ID) {
			t.Fatalf("a non-member received %v", f)
		}
	}
	// Once invited she reads and posts.
	if _, err := h.svc.Invite(ctx, ann, ch.ID, "eve"); err != nil {
		t.Fatal(err)
	}
	e.expect("conversation_added", func(f frame) bool { return f.str("channel") == ch.ID })
	e.sendMsg("e1", ch.ID, "thanks")
	e.send(map[string]any{"type": "history", "id": "h", "channel": ch.ID, "limit": 10})
	hist := e.expect("history", nil)
	if msgs, _ := hist["messages"].([]any); len(msgs) != 3 || hist["has_more"] != false {
		t.Fatalf("history after invite = %v", hist)
	}
	// Kicked, she stops receiving.
	if err := h.svc.Kick(ctx, ann, ch.ID, eve.ID); err != nil {
		t.Fatal(err)
	}
	e.expect("conversation_removed", func(f frame) bool { return f.str("channel") == ch.ID })
	e.send(map[string]any{"type": "send", "id": "e2", "channel": ch.ID, "body": "still here?"})
	wantError(t, e.reply("e2"), "not_found")
}

func TestResume_NoLossNoDuplicateAcrossReconnect(t *testing.T) {
	h := newHarness(t, chat.Config{ResumeLimit: 36, SendRate: ratelimit.Limit{Burst: 1000, Every: time.Millisecond}})
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	b := h.dial(t, bob)
	a := h.dial(t, ann)
	for i := range 5 {
		b.sendMsg(fmt.Sprint("pre", i), general, fmt.Sprint(i))
	}
	last := int64(0)
	for last < 5 {
		last = a.expect("message", nil).num("seq")
	}
	a.close()
	for i := range 3 {
		b.sendMsg(fmt.Sprint("gap", i), general, "while away")
	}
	// Reconnect while bob keeps sending: messages are stored during the resume.
	a = h.dial(t, ann)
	const total = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 8; i < total; i++ {
			b.send(map[string]any{"type": "send", "id": fmt.Sprint("live", i), "channel": general, "body": "live"})
		}
	}()
	a.send(map[string]any{"type": "resume", "id": "res", "positions": map[string]int64{general: last}})
	// The client rule: drop this conversation's message frames until its
	// "resumed" frame; apply its backlog; then apply live frames.
	var got []int64
	resumed := false
	deadline := time.After(wait)
	for len(got) == 0 || got[len(got)-1] < total {
		select {
		case f := <-a.frames:
			switch f.str("type") {
			case "resumed":
				if !f["recovered"].(bool) {
					t.Fatalf("not recovered: %v", f)
				}
				resumed = true
				for _, m := range f["messages"].([]any) {
					got = append(got, int64(m.(map[string]any)["seq"].(float64)))
				}
				if n := len(got); n > 0 && got[n-1] != f.num("last_seq") {
					t.Fatalf("backlog ends at %d, last_seq %d", got[n-1], f.num("last_seq"))
				}
			case "message":
				if resumed {
					got = append(got, f.num("seq"))
				}
			}
		case <-deadline:
			t.Fatalf("incomplete after resume: %v", got)
		}
	}
	<-done
	for i, seq := range got {
		if seq != last+1+int64(i) {
			t.Fatalf("after resume got %v: gap or duplicate at %d", got, i)
		}
	}

	// Beyond the limit: recovered false, so the client pages history.
	a.send(map[string]any{"type": "resume", "id": "far", "positions": map[string]int64{general: 0, "chn_nope": 3}})
	far := a.expect("resumed", func(f frame) bool { return f.str("channel") == general })
	if far["recovered"] != false || far.str("reason") != "too_many" || far.num("last_seq") != total {
		t.Fatalf("far resume = %v", far)
	}
	if f := a.expect("resumed", func(f frame) bool { return f.str("channel") == "chn_nope" }); f.str("reason") != "not_member" {
		t.Fatalf("unknown conversation = %v", f)
	}
}

func TestEditDelete_PropagateAndPermissions(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ctx := context.Background()
	owner, ann, bob := h.user("owner", unhidra.RoleMember), h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	ch, _ := h.svc.CreateChannel(ctx, owner, "team", false)
	h.svc.Join(ctx, ann, ch.ID)
	h.svc.Join(ctx, bob, ch.ID)
	a, b := h.dial(t, ann), h.dial(t, bob)
	ack := a.sendMsg("1", ch.ID, "typo")
	id := ack.str("message_id")

	a.send(map[string]any{"type": "edit", "id": "e1", "message_id": id, "body": "fixed"})
	if r := a.reply("e1"); r.str("type") != "ack" {
		t.Fatalf("edit: %v", r)
	}
	ed := b.expect("message_edited", nil)
	if ed.str("channel") != ch.ID || ed.num("seq") != 1 || ed.str("message_id") != id || ed.str("body") != "fixed" {
		t.Fatalf("message_edited = %v", ed)
	}
	b.send(map[string]any{"type": "edit", "id": "e2", "message_id": id, "body": "not mine"})
	wantError(t, b.reply("e2"), "forbidden")
	b.send(map[string]any{"type": "delete", "id": "d1", "message_id": id})
	wantError(t, b.reply("d1"), "forbidden")
	// The channel's owner may delete it.
	if _, err := h.svc.Delete(ctx, owner, ch.ID, id); err != nil {
		t.Fatal(err)
	}
	del := a.expect("message_deleted", nil)
	if del.str("channel") != ch.ID || del.num("seq") != 1 || del.str("message_id") != id {
		t.Fatalf("message_deleted = %v", del)
	}
	page, _ := h.svc.History(ctx, bob, ch.ID, nil, nil, 0)
	if len(page.Messages) != 1 || !page.Messages[0].Deleted || page.Messages[0].Body != "" {
		t.Fatalf("history after delete = %+v", page.Messages)
	}
	if _, err := h.svc.Edit(ctx, ann, ch.ID, id, "again"); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("edit of a deleted message: %v", err)
	}
	// A server administrator may delete anywhere; the wrong channel in the path is not found.
	ack = a.sendMsg("2", ch.ID, "spam")
	root := h.user("root", unhidra.RoleAdmin)
	if _, err := h.svc.Delete(ctx, root, general, ack.str("message_id")); unhidra.ErrorCode(err) != protocol.ErrNotFound {
		t.Fatalf("delete through the wrong channel: %v", err)
	}
	if _, err := h.svc.Delete(ctx, root, ch.ID, ack.str("message_id")); err != nil {
		t.Fatalf("server admin delete: %v", err)
	}
}

func TestPresence_AcrossTwoConnectionsOfOneUser(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	b := h.dial(t, bob)
	isAnn := func(f frame) bool { return f.str("user") == ann.ID }
	a1 := h.dial(t, ann)
	if p := b.expect("presence", isAnn); p.str("status") != "online" {
		t.Fatalf("first connection: %v", p)
	}
	a2 := h.dial(t, ann)
	a1.close()
	// Still connected through a2: the next presence bob gets is the status
	// change, not "offline".
	a2.send(map[string]any{"type": "presence", "id": "p", "status": "away"})
	if p := b.expect("presence", isAnn); p.str("status") != "away" {
		t.Fatalf("after closing one of two connections: %v", p)
	}
	a2.close()
	p := b.expect("presence", isAnn)
	if p.str("status") != "offline" || p.str("last_seen") == "" {
		t.Fatalf("after the last connection: %v", p)
	}
	// A reconnecting bob sees nobody else online in his snapshot.
	if got := h.svc.Presence(ann.ID); got.Status != "offline" || got.LastSeen.IsZero() {
		t.Fatalf("Presence = %+v", got)
	}
}

func TestTyping_DeliveredAndRateLimited(t *testing.T) {
	h := newHarness(t, chat.Config{TypingRate: ratelimit.Limit{Burst: 1, Every: time.Hour}})
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	a, b := h.dial(t, ann), h.dial(t, bob)
	a.send(map[string]any{"type": "typing", "channel": general})
	if f := b.expect("typing", nil); f.str("from") != ann.ID || f.str("from_name") != "ann" || f.str("channel") != general {
		t.Fatalf("typing = %v", f)
	}
	a.send(map[string]any{"type": "typing", "channel": general}) // over the rate: dropped
	a.sendMsg("after", general, "done typing")
	// Frames of one connection are handled in order, and the message is
	// published after the second typing notice was handled.
	for {
		f := b.expect("", nil)
		if f.str("type") == "typing" {
			t.Fatalf("typing over the rate was delivered: %v", f)
		}
		if f.str("type") == "message" {
			break
		}
	}
}

func TestSend_HostileInput(t *testing.T) {
	h := newHarness(t, chat.Config{SendRate: ratelimit.Limit{Burst: 7, Every: time.Hour}})
	ann := h.user("ann", unhidra.RoleMember)
	a := h.dial(t, ann)
	cases := []struct {
		frame map[string]any
		code  string
	}{
		{map[string]any{"channel": general, "body": strings.Repeat("é", unhidra.MaxBodyChars+1)}, "too_large"},
		{map[string]any{"channel": general, "body": ""}, "invalid"},
		{map[string]any{"channel": general, "body": " \n\t "}, "invalid"},
		{map[string]any{"channel": general, "body": "nul\x00"}, "invalid"},
		{map[string]any{"channel": general, "to": "bob", "body": "both"}, "invalid"},
		{map[string]any{"body": "neither"}, "invalid"},
		{map[string]any{"channel": strings.Repeat("c", 10000), "body": "x"}, "not_found"},
		{map[string]any{"to": "nobody", "body": "x"}, "not_found"},
		{map[string]any{"to": ann.ID, "body": "myself"}, "invalid"},
	}
	for i, c := range cases {
		id := fmt.Sprint("bad", i)
		c.frame["type"], c.frame["id"] = "send", id
		a.send(c.frame)
		wantError(t, a.reply(id), c.code)
	}
	// The longest body passes (4,000 four-byte characters).
	a.sendMsg("max", general, strings.Repeat("😀", unhidra.MaxBodyChars))
	// Resume and read positions are validated.
	a.send(map[string]any{"type": "resume", "id": "neg", "positions": map[string]int64{general: -1}})
	wantError(t, a.reply("neg"), "invalid")
	big := map[string]int64{}
	for i := range chat.MaxResumeConversations + 1 {
		big[fmt.Sprint("c", i)] = 1
	}
	a.send(map[string]any{"type": "resume", "id": "big", "positions": big})
	wantError(t, a.reply("big"), "too_large")
	a.send(map[string]any{"type": "history", "id": "hneg", "channel": general, "before": -5})
	wantError(t, a.reply("hneg"), "invalid")
	// The per-user rate: a bucket of 7, of which the five refused sends
	// that passed body validation and the longest body took six.
	a.send(map[string]any{"type": "send", "id": "r1", "channel": general, "body": "one more"})
	a.send(map[string]any{"type": "send", "id": "r2", "channel": general, "body": "too many"})
	a.reply("r1")
	if r := a.reply("r2"); r.str("code") != "rate_limited" || r.num("retry_after") < 1 {
		t.Fatalf("over the per-user rate: %v", r)
	}
}

func TestChannels_Rules(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ctx := context.Background()
	ann, bob, carl := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember), h.user("carl", unhidra.RoleMember)
	root := h.user("root", unhidra.RoleAdmin)
	code := func(err error) string { return unhidra.ErrorCode(err) }

	for _, bad := range []string{"", " pad", strings.Repeat("n", unhidra.MaxChannelName+1), "bell\a", "zw\u200bsp", "\xff"} {
		if _, err := h.svc.CreateChannel(ctx, ann, bad, false); err == nil {
			t.Errorf("channel name %q accepted", bad)
		}
	}
	priv, err := h.svc.CreateChannel(ctx, ann, "Private Ops", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.CreateChannel(ctx, bob, "private ops", false); code(err) != protocol.ErrConflict {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := h.svc.Invite(ctx, bob, priv.ID, "carl"); code(err) != protocol.ErrNotFound {
		t.Fatalf("outsider invites: %v", err)
	}
	if _, err := h.svc.Invite(ctx, ann, priv.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Invite(ctx, bob, priv.ID, "carl"); code(err) != protocol.ErrForbidden {
		t.Fatalf("plain member invites to private: %v", err)
	}
	if err := h.svc.Kick(ctx, bob, priv.ID, ann.ID); code(err) != protocol.ErrForbidden {
		t.Fatalf("member kicks owner: %v", err)
	}
	if err := h.svc.Kick(ctx, root, priv.ID, ann.ID); code(err) != protocol.ErrForbidden {
		t.Fatalf("owner kicked: %v", err)
	}
	if _, err := h.svc.Rename(ctx, bob, priv.ID, "mine"); code(err) != protocol.ErrForbidden {
		t.Fatalf("member renames: %v", err)
	}
	if c, err := h.svc.Rename(ctx, ann, priv.ID, "ops"); err != nil || c.Name != "ops" {
		t.Fatalf("owner renames: %v", err)
	}
	if _, err := h.svc.Archive(ctx, bob, priv.ID); code(err) != protocol.ErrForbidden {
		t.Fatalf("member archives: %v", err)
	}
	if _, err := h.svc.Archive(ctx, root, general); code(err) != protocol.ErrInvalid {
		t.Fatalf("general archived: %v", err)
	}
	if _, err := h.svc.Archive(ctx, ann, priv.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.svc.Send(ctx, bob, chat.SendInput{Channel: priv.ID, Body: "x"}, nil); code(err) != protocol.ErrForbidden {
		t.Fatalf("send to archived: %v", err)
	}
	if err := h.svc.Leave(ctx, bob, priv.ID); err != nil {
		t.Fatal(err)
	}
	pub, _ := h.svc.CreateChannel(ctx, carl, "lobby", false)
	watch := h.dial(t, carl)
	if err := h.svc.Join(ctx, bob, pub.ID); err != nil {
		t.Fatal(err)
	}
	if f := watch.expect("member_joined", nil); f.str("channel") != pub.ID || f.str("member") != bob.ID {
		t.Fatalf("member_joined = %v", f)
	}
	if err := h.svc.Join(ctx, bob, pub.ID); code(err) != protocol.ErrConflict {
		t.Fatalf("join twice: %v", err)
	}
	if err := h.svc.Leave(ctx, bob, pub.ID); err != nil {
		t.Fatal(err)
	}
	if f := watch.expect("member_left", nil); f.str("channel") != pub.ID || f.str("member") != bob.ID {
		t.Fatalf("member_left = %v", f)
	}
	channels, _, err := h.svc.ListPage(ctx, ann, false, "", 500)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{}
	for _, c := range channels {
		flags[c.Name] = c.Member
	}
	if !flags["general"] || !flags["ops"] || flags["lobby"] {
		t.Fatalf("ann's channel list = %v", flags)
	}

	// DMs: by name or ID, the same conversation both ways, at most 8 members.
	dm, err := h.svc.OpenDM(ctx, ann, []string{"BOB"})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := h.svc.OpenDM(ctx, bob, []string{ann.ID}); err != nil || again.ID != dm.ID {
		t.Fatalf("reopened DM = %v, %v", again, err)
	}
	if err := h.svc.Leave(ctx, ann, dm.ID); code(err) != protocol.ErrInvalid {
		t.Fatalf("leave a DM: %v", err)
	}
	many := make([]string, unhidra.MaxDMMembers)
	for i := range many {
		many[i] = h.user(fmt.Sprint("m", i), unhidra.RoleMember).ID
	}
	if _, err := h.svc.OpenDM(ctx, ann, many); code(err) != protocol.ErrInvalid {
		t.Fatalf("DM of 9: %v", err)
	}
	if _, err := h.svc.OpenDM(ctx, ann, many[:unhidra.MaxDMMembers-1]); err != nil {
		t.Fatalf("DM of 8: %v", err)
	}
	// Sending "to" opens the DM on first use; the unread count follows.
	m, _, err := h.svc.Send(ctx, carl, chat.SendInput{To: "ann", Body: "hi ann"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dms, _, _ := h.svc.ListPage(ctx, ann, true, "", 500)
	unread := map[string]int64{}
	for _, d := range dms {
		unread[d.ID] = d.Unread
	}
	if unread[m.ConversationID] != 1 {
		t.Fatalf("unread = %v", unread)
	}
	// Clients label DMs and member lists by name.
	for _, d := range dms {
		if d.ID == dm.ID && (d.Names[ann.ID] != "ann" || d.Names[bob.ID] != "bob") {
			t.Fatalf("DM names = %v", d.Names)
		}
	}
	members, err := h.svc.Members(ctx, ann, dm.ID)
	if err != nil || len(members) != 2 {
		t.Fatalf("DM members = %v, %v", members, err)
	}
	for _, mv := range members {
		if want := map[string]string{ann.ID: "ann", bob.ID: "bob"}[mv.MemberID]; mv.Name != want {
			t.Fatalf("member %s named %q, want %q", mv.MemberID, mv.Name, want)
		}
	}
	if seq, err := h.svc.MarkRead(ctx, ann, m.ConversationID, 1); err != nil || seq != 1 {
		t.Fatalf("MarkRead = %d, %v", seq, err)
	}
}

func TestRead_FrameAdvancesReadPosition(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ctx := context.Background()
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	a, b := h.dial(t, ann), h.dial(t, bob)
	for i := range 3 {
		a.sendMsg(fmt.Sprint("m", i), general, "news")
	}
	unread := func() int64 {
		channels, _, err := h.svc.ListPage(ctx, bob, false, "", 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range channels {
			if c.ID == general {
				return c.Unread
			}
		}
		t.Fatal("general not listed")
		return 0
	}
	if u := unread(); u != 3 {
		t.Fatalf("unread = %d, want 3", u)
	}
	b.send(map[string]any{"type": "read", "id": "rd", "positions": map[string]int64{general: 2}})
	if r := b.reply("rd"); r.str("type") != "ack" {
		t.Fatalf("read: %v", r)
	}
	if u := unread(); u != 1 {
		t.Fatalf("unread after reading to 2 = %d, want 1", u)
	}
	b.send(map[string]any{"type": "read", "id": "rd2", "positions": map[string]int64{"chn_secret": 1}})
	wantError(t, b.reply("rd2"), "not_found")
	b.send(map[string]any{"type": "read", "id": "rd3"})
	wantError(t, b.reply("rd3"), "invalid")
}

// A connection learns of a conversation it was added to before it sees any
// of its messages, and from which seq on the stream is complete: messages
// after last_seq may have been sent before it joined (on another node),
// so clients fetch them from history.
func TestConversationAdded_BeforeMessagesWithLastSeq(t *testing.T) {
	h := newHarness(t, chat.Config{})
	ctx := context.Background()
	ann, bob := h.user("ann", unhidra.RoleMember), h.user("bob", unhidra.RoleMember)
	a := h.dial(t, ann)
	b := h.dial(t, bob)

	// A DM opened by its first message.
	b.send(map[string]any{"type": "send", "id": "d1", "to": "ann", "body": "first words"})
	var added frame
	for added == nil {
		f := a.expect("", nil)
		switch f.str("type") {
		case "message":
			t.Fatalf("message before conversation_added: %v", f)
		case "conversation_added":
			added = f
		}
	}
	if added["last_seq"] != nil {
		t.Fatalf("new DM: last_seq %v, want none (0)", added["last_seq"])
	}
	a.expect("message", func(f frame) bool { return f.str("body") == "first words" })

	// Joining a channel with history: last_seq is where it stood.
	ch, err := h.svc.CreateChannel(ctx, bob, "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b.sendMsg(fmt.Sprint("o", i), ch.ID, "before ann")
	}
	if err := h.svc.Join(ctx, ann, ch.ID); err != nil {
		t.Fatal(err)
	}
	f := a.expect("conversation_added", func(f frame) bool { return f.str("channel") == ch.ID })
	if f["last_seq"] != float64(3) {
		t.Fatalf("joined channel: last_seq %v, want 3", f["last_seq"])
	}
}

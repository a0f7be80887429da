package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// resumeFrame is the part of a server frame the cluster resume test reads.
type resumeFrame struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Channel   string `json:"channel"`
	Seq       int64  `json:"seq"`
	MessageID string `json:"message_id"`
	FromName  string `json:"from_name"`
	LastSeq   int64  `json:"last_seq"`
	Recovered bool   `json:"recovered"`
	Reason    string `json:"reason"`
	Code      string `json:"code"`
	Messages  []struct {
		Seq       int64  `json:"seq"`
		MessageID string `json:"message_id"`
	} `json:"messages"`
}

// rawConn is a WebSocket connection whose frames a goroutine reads into a
// channel (closed when the connection ends).
type rawConn struct {
	conn   *websocket.Conn
	frames chan resumeFrame
	done   chan struct{}
	quit   chan struct{} // closed by close: the reader stops even if nobody reads frames
	once   sync.Once
}

func dialRaw(t *testing.T, s *server, token string) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(s.url, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: s.client, Subprotocols: []string{protocol.Subprotocol, "bearer." + token}})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 22)
	rc := &rawConn{conn: conn, frames: make(chan resumeFrame, 4096), done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(rc.done)
		defer close(rc.frames)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f resumeFrame
			if json.Unmarshal(data, &f) == nil {
				select {
				case rc.frames <- f:
				case <-rc.quit:
					return
				}
			}
		}
	}()
	t.Cleanup(rc.close)
	return rc
}

func (rc *rawConn) close() {
	rc.once.Do(func() { close(rc.quit) })
	rc.conn.CloseNow()
	<-rc.done
}

func (rc *rawConn) next(t *testing.T) resumeFrame {
	t.Helper()
	select {
	case f, ok := <-rc.frames:
		if !ok {
			t.Fatal("connection ended")
		}
		return f
	case <-time.After(15 * time.Second):
		t.Fatal("no frame for 15 s")
	}
	panic("unreachable")
}

// TestCluster_ResumeSplitsExactlyAcrossNodes: senders on both nodes of a
// cluster keep a channel busy while a listener reconnects again and again,
// alternately to node B and node A, and resumes from the last seq it
// applied. Every round, the resumed frame must split the stream exactly:
// frames before it are at or below its last_seq, its backlog is every seq
// after the position up to last_seq, and the live frames after it start at
// last_seq+1 without gap. Messages stored by the other node are in flight
// on the bus at the moment of the resume, so a resume that took its
// position from the store (or did not hold back the frames still coming
// from the other node) would put some of them on the wrong side. At the end
// the applied stream equals the store's history, seq for seq.
func TestCluster_ResumeSplitsExactlyAcrossNodes(t *testing.T) {
	cl := startCluster(t, "--message-rate", "1000", "--message-burst", "1000", "--send-rate", "1000", "--send-burst", "1000")
	nodes := map[string]*server{"A": cl.a, "B": cl.b}
	_, tokA := register(t, cl.a, "sender-a")
	_, tokB := register(t, cl.a, "sender-b")
	_, tokL := register(t, cl.a, "listener")
	general := unhidra.GeneralChannelID

	// Senders: one per node, 100 messages/s each, until stop.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var sendErrs []string
	for _, s := range []struct {
		name string
		node *server
		tok  string
	}{{"a", cl.a, tokA}, {"b", cl.b, tokB}} {
		rc := dialRaw(t, s.node, s.tok)
		wg.Add(2)
		go func() { // drain: acks, its own messages, presence
			defer wg.Done()
			for f := range rc.frames {
				if f.Type == "error" {
					errMu.Lock()
					sendErrs = append(sendErrs, fmt.Sprintf("sender %s: %s", s.name, f.Code))
					errMu.Unlock()
				}
			}
		}()
		go func() {
			defer wg.Done()
			defer rc.conn.Close(websocket.StatusNormalClosure, "")
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				b, _ := json.Marshal(map[string]string{"type": "send", "id": fmt.Sprintf("%s-%d", s.name, i), "channel": general, "body": fmt.Sprintf("%s %d", s.name, i)})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := rc.conn.Write(ctx, websocket.MessageText, b)
				cancel()
				if err != nil {
					errMu.Lock()
					sendErrs = append(sendErrs, fmt.Sprintf("sender %s: write: %v", s.name, err))
					errMu.Unlock()
					return
				}
			}
		}()
	}
	stopSenders := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopSenders()

	applied := map[int64]string{} // seq → message ID, every seq the listener applied
	apply := func(round int, seq int64, id string) {
		t.Helper()
		if _, dup := applied[seq]; dup {
			t.Fatalf("round %d: seq %d applied twice", round, seq)
		}
		applied[seq] = id
	}
	const liveWant = 20

	// Round 0: the listener connects to node B and takes the live stream.
	rc := dialRaw(t, cl.b, tokL)
	var first, pos int64
	for n := 0; n < liveWant; {
		f := rc.next(t)
		if f.Type != "message" || f.Channel != general {
			continue
		}
		if n > 0 && f.Seq != pos+1 {
			t.Fatalf("round 0: live seq %d after %d", f.Seq, pos)
		}
		if n == 0 {
			first = f.Seq
		}
		apply(0, f.Seq, f.MessageID)
		pos = f.Seq
		n++
	}
	rc.close()

	// Rounds 1..10: reconnect alternately to B and A and resume from pos
	// while both senders keep sending.
	order := []string{"B", "A", "B", "A", "B", "A", "B", "A", "B", "A"}
	early := 0
	for i, name := range order {
		round := i + 1
		time.Sleep(60 * time.Millisecond) // messages go on while the listener is away
		rc := dialRaw(t, nodes[name], tokL)
		// Let some live frames arrive before resuming (a few ms up to
		// the presence snapshot and beyond), as a real client would.
		var before []resumeFrame
		wait := time.After(time.Duration(round*7%25) * time.Millisecond)
	prelude:
		for {
			select {
			case f, ok := <-rc.frames:
				if !ok {
					t.Fatalf("round %d: connection ended", round)
				}
				if f.Type == "message" && f.Channel == general {
					before = append(before, f)
				}
			case <-wait:
				break prelude
			}
		}
		rid := fmt.Sprintf("r%d", round)
		b, _ := json.Marshal(map[string]any{"type": "resume", "id": rid, "positions": map[string]int64{general: pos}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := rc.conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		cancel()
		var res resumeFrame
		for {
			f := rc.next(t)
			if f.Type == "resumed" && f.ID == rid {
				res = f
				break
			}
			if f.Type == "error" {
				t.Fatalf("round %d: resume answered %s", round, f.Code)
			}
			if f.Type == "message" && f.Channel == general {
				before = append(before, f)
			}
		}
		if !res.Recovered || res.Channel != general {
			t.Fatalf("round %d (node %s): resumed %+v", round, name, res)
		}
		for _, f := range before {
			if f.Seq > res.LastSeq {
				t.Fatalf("round %d (node %s): frame seq %d (from %s) arrived before resumed with last_seq %d", round, name, f.Seq, f.FromName, res.LastSeq)
			}
		}
		if len(before) > 0 {
			early++
		}
		if res.LastSeq <= pos {
			t.Fatalf("round %d: last_seq %d not beyond position %d although the senders kept sending", round, res.LastSeq, pos)
		}
		if int64(len(res.Messages)) != res.LastSeq-pos {
			t.Fatalf("round %d (node %s): backlog of %d messages for (%d, %d]", round, name, len(res.Messages), pos, res.LastSeq)
		}
		for _, m := range res.Messages {
			if m.Seq != pos+1 {
				t.Fatalf("round %d (node %s): backlog seq %d after %d", round, name, m.Seq, pos)
			}
			apply(round, m.Seq, m.MessageID)
			pos = m.Seq
		}
		for n := 0; n < liveWant; {
			f := rc.next(t)
			if f.Type != "message" || f.Channel != general {
				continue
			}
			if f.Seq != pos+1 {
				t.Fatalf("round %d (node %s): live seq %d (from %s) after %d (resumed last_seq %d)", round, name, f.Seq, f.FromName, pos, res.LastSeq)
			}
			apply(round, f.Seq, f.MessageID)
			pos = f.Seq
			n++
		}
		rc.close()
		t.Logf("round %d (node %s): %d frames before resumed, backlog %d, live up to %d", round, name, len(before), len(res.Messages), pos)
	}
	t.Logf("rounds with live frames before resumed: %d of %d", early, len(order))

	stopSenders()
	errMu.Lock()
	if len(sendErrs) > 0 {
		t.Fatalf("senders: %v", sendErrs)
	}
	errMu.Unlock()

	// The store: every seq from the first applied to the last, each with
	// the message ID the listener applied, and nothing skipped.
	stored := map[int64]string{}
	for after := int64(0); ; {
		st, page := cl.a.get(t, fmt.Sprintf("/api/v1/channels/%s/messages?after=%d&limit=200", general, after), tokL)
		if st != 200 {
			t.Fatalf("history: %d %v", st, page)
		}
		for _, m := range page["messages"].([]any) {
			m := m.(map[string]any)
			seq := int64(m["seq"].(float64))
			stored[seq] = m["message_id"].(string)
			after = seq
		}
		if page["has_more"] != true {
			break
		}
	}
	for seq := first; seq <= pos; seq++ {
		id, ok := applied[seq]
		if !ok {
			t.Fatalf("stored seq %d never applied", seq)
		}
		if stored[seq] != id {
			t.Fatalf("seq %d: applied %q, stored %q", seq, id, stored[seq])
		}
	}
	if int64(len(applied)) != pos-first+1 {
		t.Fatalf("applied %d messages for seqs %d..%d", len(applied), first, pos)
	}
	t.Logf("applied seqs %d..%d (%d messages, stored %d in all)", first, pos, len(applied), len(stored))
}

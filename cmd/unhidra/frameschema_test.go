package main

import (
	"bytes"
	"encoding/json"
	"os"
	"sync"
	"testing"

	"github.com/unhidra/unhidra/protocol/schema"
)

// The JSON Schemas of the frames the server sends (protocol/schema, one
// file per frame type) are checked against every frame the protocol tests
// read: checkFrame is called by their read helpers.

var sampleMu sync.Mutex

// checkFrame validates one server frame against the schema of its type.
// With UNHIDRA_FRAME_SAMPLES set it also appends the frame to that file.
func checkFrame(t testing.TB, data []byte) {
	t.Helper()
	if f := os.Getenv("UNHIDRA_FRAME_SAMPLES"); f != "" {
		sampleMu.Lock()
		if out, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			out.Write(append(bytes.TrimSpace(data), '\n'))
			out.Close()
		}
		sampleMu.Unlock()
		return // collecting samples for new schemas, not checking
	}
	if err := validateFrame(data); err != nil {
		t.Fatal(err)
	}
}

func validateFrame(data []byte) error { return schema.Validate(data) }

// TestFrameSchemas_RejectWrongFrames: the schemas are not vacuous.
func TestFrameSchemas_RejectWrongFrames(t *testing.T) {
	good := `{"type":"message","channel":"c","seq":3,"message_id":"m","from":"u","from_name":"ann","body":"hi","ts":"2026-12-07T00:00:00Z"}`
	if err := validateFrame([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"type":"message","channel":"c","seq":"3","message_id":"m","from":"u","from_name":"ann","body":"hi","ts":"2026-12-07T00:00:00Z"}`,
		`{"type":"message","channel":"c","message_id":"m","from":"u","from_name":"ann","body":"hi","ts":"2026-12-07T00:00:00Z"}`,
		`{"type":"welcome"}`,
		`{"type":"no_such_frame"}`,
		`{"type":"error","code":5,"message":"x"}`,
		`not json`,
	} {
		if err := validateFrame([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestFrameSchemas_ChatFramesObserved makes a real server send every chat
// frame that the other protocol tests do not read (pong, typing,
// message_edited, message_deleted, member_joined, channel_updated,
// resumed, history), and reads each through wsClient.read, which validates it
// against its schema.
func TestFrameSchemas_ChatFramesObserved(t *testing.T) {
	s := startServer(t, t.TempDir(), map[string]string{"UNHIDRA_ADMIN_PASSWORD": "harbor lights at dusk"})
	annID, ann := register(t, s, "ann")
	bobID, bob := register(t, s, "bob")
	st, created := s.request(t, "POST", "/api/v1/channels", ann, map[string]any{"name": "team"})
	if st != 201 {
		t.Fatalf("create channel: %d %v", st, created)
	}
	team := created["id"].(string)
	a := dialWS(t, s.client, s.url, ann)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// pong echoes the ping's id.
	must(a.send(map[string]any{"type": "ping", "id": "p1"}))
	if f := a.expect("pong", nil); f["id"] != "p1" {
		t.Fatalf("pong = %v", f)
	}

	// member_joined to the members when bob joins.
	if st, body := s.request(t, "POST", "/api/v1/channels/"+team+"/join", bob, nil); st != 204 {
		t.Fatalf("join: %d %v", st, body)
	}
	if f := a.expect("member_joined", nil); f["channel"] != team || f["member"] != bobID {
		t.Fatalf("member_joined = %v", f)
	}
	b := dialWS(t, s.client, s.url, bob)

	// A message, then its edit and its deletion.
	must(a.send(map[string]any{"type": "send", "id": "s1", "channel": team, "body": "helo"}))
	ack := a.expect("ack", func(f map[string]any) bool { return f["id"] == "s1" })
	msgID := ack["message_id"].(string)
	b.expect("message", func(f map[string]any) bool { return f["message_id"] == msgID })
	must(a.send(map[string]any{"type": "edit", "id": "e1", "channel": team, "message_id": msgID, "body": "hello"}))
	if f := b.expect("message_edited", nil); f["message_id"] != msgID || f["body"] != "hello" || f["seq"] != 1.0 {
		t.Fatalf("message_edited = %v", f)
	}
	must(a.send(map[string]any{"type": "delete", "id": "d1", "channel": team, "message_id": msgID}))
	if f := b.expect("message_deleted", nil); f["message_id"] != msgID || f["channel"] != team {
		t.Fatalf("message_deleted = %v", f)
	}

	// typing reaches the other member.
	must(a.send(map[string]any{"type": "typing", "channel": team}))
	if f := b.expect("typing", nil); f["from"] != annID || f["channel"] != team {
		t.Fatalf("typing = %v", f)
	}

	// A second message, then bob resumes from seq 0 and reads his position.
	must(a.send(map[string]any{"type": "send", "id": "s2", "channel": team, "body": "again"}))
	a.expect("ack", func(f map[string]any) bool { return f["id"] == "s2" })
	// The ack can leave before this node's sequencer delivered the message;
	// once bob has it live, the resume below sees seq 2.
	b.expect("message", func(f map[string]any) bool { return f["body"] == "again" })
	must(b.send(map[string]any{"type": "resume", "id": "r1", "positions": map[string]any{team: 0}}))
	res := b.expect("resumed", nil)
	if msgs, _ := res["messages"].([]any); res["channel"] != team || res["recovered"] != true || res["last_seq"] != 2.0 || len(msgs) != 2 {
		t.Fatalf("resumed = %v", res)
	}
	b.expect("ack", func(f map[string]any) bool { return f["id"] == "r1" })
	must(b.send(map[string]any{"type": "read", "id": "m1", "positions": map[string]any{team: 2}}))
	b.expect("ack", func(f map[string]any) bool { return f["id"] == "m1" })
	must(b.send(map[string]any{"type": "history", "id": "h1", "channel": team, "limit": 1}))
	if f := b.expect("history", nil); f["id"] != "h1" || f["has_more"] != true || len(f["messages"].([]any)) != 1 {
		t.Fatalf("history = %v", f)
	}

	// channel_updated when the owner renames the channel.
	if st, body := s.request(t, "PATCH", "/api/v1/channels/"+team, ann, map[string]any{"name": "crew"}); st != 200 {
		t.Fatalf("rename: %d %v", st, body)
	}
	if f := b.expect("channel_updated", nil); f["channel"] != team || f["name"] != "crew" || f["archived"] != false {
		t.Fatalf("channel_updated = %v", f)
	}
}

// TestFrameSchemas_ObservedFramesMissingFieldFails: each schema of the
// frames above rejects the frame without one of its required fields.
func TestFrameSchemas_ObservedFramesMissingFieldFails(t *testing.T) {
	for _, c := range []struct{ good, drop string }{
		{`{"type":"pong","id":"p1"}`, ""},
		{`{"type":"typing","channel":"c","from":"u","from_name":"ann","from_kind":"user"}`, "from"},
		{`{"type":"message_edited","channel":"c","seq":1,"message_id":"m","body":"b","edited_at":"2026-12-07T00:00:00Z"}`, "edited_at"},
		{`{"type":"message_deleted","channel":"c","seq":1,"message_id":"m"}`, "message_id"},
		{`{"type":"member_joined","channel":"c","member":"u"}`, "member"},
		{`{"type":"channel_updated","channel":"c","name":"n","archived":false}`, "archived"},
		{`{"type":"resumed","id":"r","channel":"c","recovered":true,"last_seq":0,"messages":[]}`, "last_seq"},
		{`{"type":"history","id":"h","channel":"c","messages":[],"has_more":false}`, "has_more"},
		{`{"type":"device_alert","device":"d","name":"n","kind":"memory_leak","state":"raised","slope_bytes_per_hour":-1,"confidence":99,"reason":"r","at":"2026-12-07T00:00:00Z"}`, "state"},
	} {
		if err := validateFrame([]byte(c.good)); err != nil {
			t.Errorf("rejected a good frame: %v", err)
		}
		if c.drop == "" {
			continue
		}
		var f map[string]any
		json.Unmarshal([]byte(c.good), &f)
		delete(f, c.drop)
		bad, _ := json.Marshal(f)
		if err := validateFrame(bad); err == nil {
			t.Errorf("accepted %s without %q", c.good, c.drop)
		}
	}
	for _, bad := range []string{
		`{"type":"message_edited","channel":"c","seq":1,"message_id":"m","body":"b","edited_at":"yesterday"}`,
		`{"type":"resumed","channel":"c","recovered":true,"last_seq":1,"messages":[{"seq":1}]}`,
		`{"type":"device_alert","device":"d","name":"n","kind":"memory_leak","state":"maybe","slope_bytes_per_hour":-1,"confidence":99,"reason":"r","at":"2026-12-07T00:00:00Z"}`,
		`{"type":"read","positions":{}}`,
	} {
		if err := validateFrame([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

package ws_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ws"
)

// openSender is the recording handler plus frames sent from OnOpen.
type openSender struct {
	*recorder
	onOpen func(c *ws.Conn)
}

func (h openSender) OnOpen(c *ws.Conn) {
	h.recorder.OnOpen(c)
	h.onOpen(c)
}

// deferredServer starts a test server that upgrades like the gateway
// (UpgradeDeferred + AdoptUpgraded + Run), with onOpen run in OnOpen.
func deferredServer(t *testing.T, tr transport, onOpen func(c *ws.Conn)) *testServer {
	return startServer(t, tr, ws.Config{}, func(ts *testServer) {
		ts.deferred = true
		ts.handler = openSender{ts.h, onOpen}
		ts.subprotocol = func(offered []string) string {
			if slices.Contains(offered, "unhidra.v1") {
				return "unhidra.v1"
			}
			return ""
		}
	})
}

// The 101 response is written by the engine, in the same write as the
// frames OnOpen sent: after the client got all of it, the engine made one
// write, and the connection's byte count holds the frames only.
func TestAdoptUpgraded_ResponseAndOpenFramesInOneWrite(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := deferredServer(t, tr, func(c *ws.Conn) {
			_ = c.SendText([]byte("welcome"))
			// Without the hold, a writer would take the first frame
			// meanwhile.
			time.Sleep(20 * time.Millisecond)
			_ = c.SendText([]byte("snapshot"))
		})
		rc := ts.dialRaw(t, nil)
		for _, want := range []string{"welcome", "snapshot"} {
			f, err := rc.readFrame()
			if err != nil {
				t.Fatal(err)
			}
			if f.op != ws.OpText || string(f.payload) != want {
				t.Fatalf("frame %d %q, want text %q", f.op, f.payload, want)
			}
		}
		// A writer goroutine counts its write after the client may have
		// read it.
		c := ts.h.next(t, "open").conn
		settle(func() bool { return ts.engine.FlushStats().Writes >= 1 && c.Stats().BytesOut >= 19 })
		if w := ts.engine.FlushStats().Writes; w != 1 {
			t.Fatalf("%d socket writes for the 101 and two frames, want 1", w)
		}
		if got, want := c.Stats().BytesOut, uint64(2+7+2+8); got != want {
			t.Fatalf("BytesOut %d, want %d (the frames, not the 101)", got, want)
		}
		// The connection works on: an echo.
		rc.write(maskedFrame(ws.OpText, true, []byte("hi")))
		if f := rc.readUntil(ws.OpText); string(f.payload) != "hi" {
			t.Fatalf("echo %q", f.payload)
		}
	})
}

// An OnOpen that sends nothing still gets the 101 written, and the frames
// the client sent together with its request are served after it.
func TestAdoptUpgraded_SilentOpen(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := deferredServer(t, tr, func(*ws.Conn) {})
		// The client waits for the 101 before it sends anything.
		rc := ts.dialRaw(t, nil)
		rc.write(maskedFrame(ws.OpText, true, []byte("later")))
		if f := rc.readUntil(ws.OpText); string(f.payload) != "later" {
			t.Fatalf("echo %q", f.payload)
		}
		ts.h.next(t, "open")
		// The client sends a frame with its request.
		rc = ts.dialRaw(t, maskedFrame(ws.OpText, true, []byte("early")))
		if f := rc.readUntil(ws.OpText); string(f.payload) != "early" {
			t.Fatalf("echo %q", f.payload)
		}
		c := ts.h.next(t, "open").conn
		settle(func() bool { return c.Stats().BytesOut >= 7 })
		if got, want := c.Stats().BytesOut, uint64(2+5); got != want {
			t.Fatalf("BytesOut %d, want %d", got, want)
		}
	})
}

// A close begun in OnOpen: the 101, then the close frame; what OnOpen sent
// before it was still queued, and CloseWith discards queued messages.
func TestAdoptUpgraded_CloseInOpen(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := deferredServer(t, tr, func(c *ws.Conn) {
			_ = c.SendText([]byte("bye"))
			_ = c.CloseWith(4001, "revoked")
		})
		rc := ts.dialRaw(t, nil)
		frames := rc.expectEOF()
		if len(frames) != 1 || frames[0].closeCode() != 4001 {
			t.Fatalf("frames %+v, want close 4001 alone", frames)
		}
		ts.h.next(t, "close")
	})
}

// The deferred response is the one Upgrade writes: the chosen subprotocol
// only, the accept key.
func TestUpgradeDeferred_Response(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := deferredServer(t, tr, func(*ws.Conn) {})
		nc := ts.dialRawConn(t)
		req := upgradeRequest("Sec-WebSocket-Protocol: bearer.SECRET, unhidra.v1\r\n")
		if _, err := nc.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: unhidra.v1\r\n\r\n"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(nc, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Fatalf("response\n%q\nwant\n%q", got, want)
		}
		// A refusal is answered like Upgrade's.
		resp := rawHTTP(t, ts, "POST /ws HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	})
}

// settle waits until cond holds, for up to 10 s (a hang, not a
// measurement): counters are updated right after the write they count.
func settle(cond func() bool) {
	for deadline := time.Now().Add(10 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

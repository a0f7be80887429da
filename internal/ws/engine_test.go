package ws_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/ws"
)

func TestEngine_RoundTrip(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		c := ts.dial(t, nil)
		ctx := ctxT(t)
		big := bytes.Repeat([]byte("0123456789"), 3000) // 30,000 bytes: spans reads and TLS records
		for _, m := range []struct {
			typ  websocket.MessageType
			data []byte
		}{
			{websocket.MessageText, []byte("hello")},
			{websocket.MessageBinary, []byte{0, 1, 2, 255}},
			{websocket.MessageText, []byte{}},
			{websocket.MessageBinary, big},
		} {
			if err := c.Write(ctx, m.typ, m.data); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if typ != m.typ || !bytes.Equal(got, m.data) {
				t.Fatalf("echo: got type %v, %d bytes; want type %v, %d bytes", typ, len(got), m.typ, len(m.data))
			}
		}
		open := ts.h.next(t, "open")

		// Client-initiated close: the server echoes, the client's Close
		// returns cleanly, OnClose reports the peer's code and reason.
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("client close: %v", err)
		}
		ce := closeErr(t, ts.h.next(t, "close").err)
		if !ce.Remote || ce.Code != ws.CloseNormal || ce.Reason != "bye" || !errors.Is(ce, ws.ErrPeerClosed) {
			t.Fatalf("OnClose: %+v", ce)
		}
		// The echoes were written before the close frame, so by OnClose
		// they are counted.
		st := open.conn.Stats()
		if st.MessagesIn != 4 || st.MessagesOut != 4 || st.BytesIn < uint64(len(big)) || st.BytesOut < uint64(len(big)) {
			t.Fatalf("stats %+v", st)
		}
		if st.QueuedBytes != 0 || st.QueuedMsgs != 0 {
			t.Fatalf("queue not empty after close: %+v", st)
		}
		if err := open.conn.SendText([]byte("late")); !errors.Is(err, ws.ErrClosed) {
			t.Fatalf("send after close: %v", err)
		}
	})
}

func TestEngine_FragmentedMessages(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})

		// coder/websocket's Writer sends one frame per Write call.
		c := ts.dial(t, nil)
		ctx := ctxT(t)
		w, err := c.Writer(ctx, websocket.MessageText)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{"frag", "ment", "ed ", "ünïcode"} {
			if _, err := w.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != "fragmented ünïcode" {
			t.Fatalf("got %q, %v", got, err)
		}

		// Raw: a rune split across fragments, with a ping between them.
		rc := ts.dialRaw(t, nil)
		rc.write(maskedFrame(ws.OpText, false, []byte("caf\xc3")))
		rc.write(maskedFrame(ws.OpPing, true, []byte("are you there")))
		rc.write(maskedFrame(ws.OpContinuation, false, []byte("\xa9 ")))
		rc.write(maskedFrame(ws.OpContinuation, true, []byte("au lait")))
		pong := rc.readUntil(ws.OpPong)
		if string(pong.payload) != "are you there" {
			t.Fatalf("pong payload %q", pong.payload)
		}
		echo := rc.readUntil(ws.OpText)
		if string(echo.payload) != "café au lait" || !echo.fin {
			t.Fatalf("echo %q", echo.payload)
		}
	})
}

// TestEngine_BufferedBeforeUpgrade sends frames in the same write as the
// upgrade request: net/http reads them into its buffer, and the Engine must
// deliver them from the bytes Upgrade returned.
func TestEngine_BufferedBeforeUpgrade(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		var early []byte
		for i := range 3 {
			early = append(early, maskedFrame(ws.OpText, true, fmt.Appendf(nil, "early %d", i))...)
		}
		rc := ts.dialRaw(t, early)
		for i := range 3 {
			f := rc.readUntil(ws.OpText)
			if want := fmt.Sprintf("early %d", i); string(f.payload) != want {
				t.Fatalf("got %q, want %q", f.payload, want)
			}
		}
	})
}

// TestEngine_TLSBufferedRecords writes the upgrade request and several
// WebSocket messages, each in a TLS record of its own, in ONE TCP write.
// net/http reads only the first record (the request); the others sit
// decrypted-to-be inside the tls.Conn, where epoll cannot see them. All must
// be delivered without any further socket data.
func TestEngine_TLSBufferedRecords(t *testing.T) {
	for _, tr := range transports() {
		if !tr.tls {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			ts := startServer(t, tr, ws.Config{})
			raw, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			cc := &captureConn{Conn: raw}
			client := tls.Client(cc, clientTLSConfig())
			if err := client.Handshake(); err != nil {
				t.Fatal(err)
			}
			cc.capture(true)
			client.Write([]byte(upgradeRequest("")))
			const n = 5
			for i := range n {
				client.Write(maskedFrame(ws.OpText, true, fmt.Appendf(nil, "record %d", i)))
			}
			if _, err := raw.Write(cc.capture(false)); err != nil {
				t.Fatal(err)
			}
			rc := &rawClient{t: t, conn: client}
			rc.br = newBufReader(client)
			expect101(t, rc)
			for i := range n {
				f := rc.readUntil(ws.OpText)
				if want := fmt.Sprintf("record %d", i); string(f.payload) != want {
					t.Fatalf("got %q, want %q", f.payload, want)
				}
			}

			// And after the upgrade: several records in one write.
			cc.capture(true)
			for i := range n {
				client.Write(maskedFrame(ws.OpText, true, fmt.Appendf(nil, "later %d", i)))
			}
			if _, err := raw.Write(cc.capture(false)); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				f := rc.readUntil(ws.OpText)
				if want := fmt.Sprintf("later %d", i); string(f.payload) != want {
					t.Fatalf("got %q, want %q", f.payload, want)
				}
			}
		})
	}
}

func TestEngine_ProtocolErrors(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		code  int
	}{
		{"unmasked", append([]byte{0x81, 0x02}, "hi"...), ws.CloseProtocolError},
		{"invalid utf8", maskedFrame(ws.OpText, true, []byte("bad \xff byte")), ws.CloseInvalidPayload},
		{"reserved opcode", maskedFrame(ws.Opcode(0x3), true, nil), ws.CloseProtocolError},
		{"too big", maskedFrame(ws.OpBinary, true, make([]byte, 2000)), ws.CloseMessageTooBig},
	}
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{MaxMessageSize: 1024, CloseTimeout: 5 * time.Second})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rc := ts.dialRaw(t, nil)
				rc.write(tt.frame)
				f := rc.readUntil(ws.OpClose)
				if f.closeCode() != tt.code {
					t.Fatalf("close code %d, want %d", f.closeCode(), tt.code)
				}
				// The server half-closes after its close frame: a client
				// that waits for the server to close sees EOF promptly.
				rc.expectEOF()
				rc.conn.Close()
				ce := closeErr(t, ts.h.next(t, "close").err)
				if ce.Code != tt.code || ce.Remote || !errors.Is(ce, ws.ErrProtocol) {
					t.Fatalf("OnClose: %+v", ce)
				}
			})
		}
	})
}

func TestEngine_MessageTooBigWithLibraryClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{MaxMessageSize: 1024})
		c := ts.dial(t, nil)
		ctx := ctxT(t)
		if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("message at the limit: %v", err)
		}
		_ = c.Write(ctx, websocket.MessageBinary, make([]byte, 1025))
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
			t.Fatalf("client saw %v (status %d), want 1009", err, got)
		}
		if ce := closeErr(t, ts.h.next(t, "close").err); ce.Code != ws.CloseMessageTooBig {
			t.Fatalf("OnClose: %+v", ce)
		}
	})
}

func TestEngine_ServerClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		c := ts.dial(t, nil)
		conn := ts.h.next(t, "open").conn
		if err := conn.CloseWith(4001, "go away"); err != nil {
			t.Fatal(err)
		}
		if err := conn.CloseWith(4002, "again"); !errors.Is(err, ws.ErrClosed) {
			t.Fatalf("second CloseWith: %v", err)
		}
		if err := conn.SendText([]byte("x")); !errors.Is(err, ws.ErrClosed) {
			t.Fatalf("send after CloseWith: %v", err)
		}
		_, _, err := c.Read(ctxT(t))
		var cerr websocket.CloseError
		if !errors.As(err, &cerr) || cerr.Code != 4001 || cerr.Reason != "go away" {
			t.Fatalf("client saw %v", err)
		}
		ce := closeErr(t, ts.h.next(t, "close").err)
		if ce.Code != 4001 || ce.Reason != "go away" || ce.Remote || !errors.Is(ce, ws.ErrLocalClose) {
			t.Fatalf("OnClose: %+v", ce)
		}
	})
}

// TestEngine_CloseWithConcurrent races CloseWith and Send from many
// goroutines: exactly one CloseWith wins and OnClose runs once (the
// recorder checks).
func TestEngine_CloseWithConcurrent(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		c := ts.dial(t, nil)
		c.CloseRead(context.Background())
		conn := ts.h.next(t, "open").conn
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for range 50 {
					_ = conn.SendText([]byte("spam"))
				}
				if conn.CloseWith(4000+i, "race") == nil {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d CloseWith calls won", wins.Load())
		}
		ce := closeErr(t, ts.h.next(t, "close").err)
		if ce.Code < 4000 || ce.Code > 4007 {
			t.Fatalf("OnClose: %+v", ce)
		}
	})
}

func TestEngine_PeerVanishes(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		rc := ts.dialRaw(t, nil)
		ts.h.next(t, "open")
		rc.conn.Close()
		ce := closeErr(t, ts.h.next(t, "close").err)
		if ce.Code != ws.CloseAbnormal || ce.Remote || !errors.Is(ce, ws.ErrPeerClosed) {
			t.Fatalf("OnClose: %+v", ce)
		}
	})
}

// TestEngine_IdleTimeout: a client that never answers pings sees the
// server's pings, then a close frame with IdleCloseCode after IdleTimeout,
// and the socket closes (CloseTimeout) even though it never answers.
func TestEngine_IdleTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{PingInterval: 20 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
			IdleCloseCode: 4003, CloseTimeout: 100 * time.Millisecond})
		rc := ts.dialRaw(t, nil)
		frames := rc.expectEOF()
		pings, closes := 0, 0
		for _, f := range frames {
			switch {
			case f.op == ws.OpPing && closes == 0:
				pings++
			case f.op == ws.OpClose:
				closes++
				if f.closeCode() != 4003 || string(f.payload[2:]) != "idle timeout" {
					t.Fatalf("close frame payload %q", f.payload)
				}
			default:
				t.Fatalf("unexpected frame %v", f.op)
			}
		}
		if pings == 0 || closes != 1 {
			t.Fatalf("%d pings, %d close frames before EOF", pings, closes)
		}
		ce := closeErr(t, ts.h.next(t, "close").err)
		if !errors.Is(ce, ws.ErrIdleTimeout) || ce.Code != 4003 {
			t.Fatalf("OnClose: %+v", ce)
		}
	})
}

// TestEngine_PongsKeepAlive: a client that answers pings (coder/websocket
// does while reading) stays connected through many idle timeouts' worth of
// pings.
func TestEngine_PongsKeepAlive(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		// The idle timeout is 24 ping intervals: a client answering every
		// ping stays, even when a loaded machine delays a few pongs (with 20
		// intervals of 10 ms a 200 ms stall of the test process closed it).
		ts := startServer(t, tr, ws.Config{PingInterval: 25 * time.Millisecond, IdleTimeout: 600 * time.Millisecond})
		var pings atomic.Int32
		enough := make(chan struct{})
		c := ts.dial(t, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
			if pings.Add(1) == 48 { // 1.2 s of pings at the nominal rate: 2 idle timeouts
				close(enough)
			}
			return true
		}})
		ctx := c.CloseRead(context.Background())
		select {
		case <-enough:
		case <-ctx.Done():
			t.Fatalf("closed after %d pings", pings.Load())
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d pings", pings.Load())
		}
		conn := ts.h.next(t, "open").conn
		if conn.Stats().LastReceived.Before(conn.Stats().ConnectedAt) {
			t.Fatal("pongs not counted as received frames")
		}
		if err := conn.SendText([]byte("still here")); err != nil {
			t.Fatalf("connection dropped despite pongs: %v", err)
		}
	})
}

// TestEngine_ReadTimeout: a client that starts a frame (or a fragmented
// message) and stalls is closed with 1008 after ReadTimeout, even while it
// keeps the idle timer happy with pings.
func TestEngine_ReadTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{ReadTimeout: 150 * time.Millisecond, IdleTimeout: 10 * time.Second, PingInterval: -1,
			CloseTimeout: 100 * time.Millisecond})
		t.Run("PartialHeader", func(t *testing.T) {
			rc := ts.dialRaw(t, nil)
			rc.write(maskedFrame(ws.OpText, true, []byte("never finished"))[:3])
			if f := rc.readUntil(ws.OpClose); f.closeCode() != ws.ClosePolicyViolation {
				t.Fatalf("close code %d", f.closeCode())
			}
			rc.expectEOF()
			rc.conn.Close()
			ce := closeErr(t, ts.h.next(t, "close").err)
			if !errors.Is(ce, ws.ErrReadTimeout) || ce.Code != ws.ClosePolicyViolation {
				t.Fatalf("OnClose: %+v", ce)
			}
		})
		t.Run("TricklingFragments", func(t *testing.T) {
			rc := ts.dialRaw(t, nil)
			rc.write(maskedFrame(ws.OpBinary, false, []byte("part")))
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // pings keep arriving: not idle, but the message never ends
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
						if _, err := rc.conn.Write(maskedFrame(ws.OpPing, true, nil)); err != nil {
							return
						}
					}
				}
			}()
			f := rc.readUntil(ws.OpClose)
			close(stop)
			<-done
			if f.closeCode() != ws.ClosePolicyViolation {
				t.Fatalf("close code %d", f.closeCode())
			}
			// The client neither answers nor closes: CloseTimeout ends it,
			// keeping the original reason.
			ce := closeErr(t, ts.h.next(t, "close").err)
			if !errors.Is(ce, ws.ErrReadTimeout) {
				t.Fatalf("OnClose: %+v", ce)
			}
		})
	})
}

// TestEngine_WriteDeadline: a peer that never reads makes the writer block;
// the write deadline ends it and the connection closes with ErrWrite.
func TestEngine_WriteDeadline(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{
			WriteTimeout:     100 * time.Millisecond,
			MaxQueueBytes:    64 << 20,
			MaxQueueMessages: 1 << 16,
			PingInterval:     -1,
		}, func(ts *testServer) {
			ts.beforeServe = func(nc net.Conn) {
				if err := ws.SetWriteBuffer(nc, 4096); err != nil {
					t.Error(err)
				}
			}
			ts.h.echo = false
		})
		rc := ts.dialRaw(t, nil)
		setReadBuffer(rc.conn, 4096)
		conn := ts.h.next(t, "open").conn
		chunk := make([]byte, 64<<10)
		for range 64 { // 4 MiB: far beyond the socket buffers
			if err := conn.SendBinary(chunk); err != nil {
				break // closed meanwhile: fine
			}
		}
		ce := closeErr(t, ts.h.next(t, "close").err)
		if !errors.Is(ce, ws.ErrWrite) || !errors.Is(ce, os.ErrDeadlineExceeded) {
			t.Fatalf("OnClose: %+v", ce)
		}
	})
}

// TestEngine_SlowConsumer: one client stops reading while others keep up.
// Send to the slow one starts returning ErrQueueFull (without blocking and
// without closing it); the others receive every message in order.
func TestEngine_SlowConsumer(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{MaxQueueMessages: 64, MaxQueueBytes: 256 << 10, PingInterval: -1, WriteTimeout: 5 * time.Second},
			func(ts *testServer) {
				ts.beforeServe = func(nc net.Conn) { _ = ws.SetWriteBuffer(nc, 4096) }
			})
		const fast, total = 4, 1500
		var clients []*websocket.Conn
		for range fast {
			clients = append(clients, ts.dial(t, nil))
			ts.h.next(t, "open")
		}
		slow := ts.dialRaw(t, nil)
		setReadBuffer(slow.conn, 4096)
		slowConn := ts.h.next(t, "open").conn

		received := make([]atomic.Int64, fast)
		var readers sync.WaitGroup
		readErr := make(chan error, fast)
		for i, c := range clients {
			readers.Go(func() {
				for want := 0; want < total; want++ {
					_, p, err := c.Read(context.Background())
					if err != nil {
						readErr <- err
						return
					}
					if got := string(p[:8]); got != fmt.Sprintf("%08d", want) {
						readErr <- fmt.Errorf("client %d: got message %s, want %08d", i, got, want)
						return
					}
					received[i].Add(1)
				}
			})
		}

		payload := make([]byte, 1024)
		queueFull := 0
		for i := range total {
			copy(payload, fmt.Sprintf("%08d", i))
			pm := ws.NewPreparedMessage(false, payload)
			ts.engine.Range(func(c *ws.Conn) bool {
				err := c.SendPrepared(pm)
				switch {
				case err == nil:
				case c == slowConn && errors.Is(err, ws.ErrQueueFull):
					queueFull++
				default:
					t.Errorf("send to conn %d: %v", c.ID(), err)
				}
				return true
			})
			// Pace the producer to the fast readers, so their bounded queues
			// never fill (the queue bound counts a batch until it is fully written, so
			// allow at most a quarter of it unreceived); the slow one never drains.
			for j := range fast {
				for received[j].Load() < int64(i-16) {
					select {
					case err := <-readErr:
						t.Fatal(err)
					default:
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
		}
		readers.Wait()
		close(readErr)
		for err := range readErr {
			t.Fatal(err)
		}
		if queueFull == 0 {
			t.Fatal("the slow consumer never hit ErrQueueFull")
		}
		if st := slowConn.Stats(); st.QueuedMsgs > 64 || st.QueuedBytes > 256<<10 {
			t.Fatalf("queue over its bounds: %+v", st)
		}
		if ts.engine.Len() != fast+1 {
			t.Fatalf("ErrQueueFull closed a connection: %d left", ts.engine.Len())
		}
		// The caller chooses to close it: the close frame bypasses the full
		// queue, and OnClose reports the caller's code.
		if err := slowConn.CloseWith(4008, "slow consumer"); err != nil {
			t.Fatal(err)
		}
		// It never reads its close frame; when it goes away the blocked
		// write fails at once, and the first reason stays.
		slow.conn.Close()
		for {
			ev := ts.h.next(t, "close")
			if ev.conn == slowConn {
				if ce := closeErr(t, ev.err); ce.Code != 4008 || !errors.Is(ce, ws.ErrLocalClose) {
					t.Fatalf("OnClose: %+v", ce)
				}
				break
			}
		}
	})
}

func TestEngine_QueueBounds(t *testing.T) {
	ts := startServer(t, transports()[0], ws.Config{MaxQueueMessages: 3, MaxQueueBytes: 100, PingInterval: -1},
		func(ts *testServer) { ts.h.echo = false })
	ts.dialRaw(t, nil)
	conn := ts.h.next(t, "open").conn
	if err := conn.SendBinary(make([]byte, 200)); !errors.Is(err, ws.ErrMessageTooLarge) {
		t.Fatalf("oversized message: %v", err)
	}
	// Whether the writer has taken earlier messages off the queue is a
	// race, so only check that the bound is never exceeded.
	for range 100 {
		err := conn.SendBinary(make([]byte, 30))
		if err != nil && !errors.Is(err, ws.ErrQueueFull) {
			t.Fatal(err)
		}
		if st := conn.Stats(); st.QueuedMsgs > 3 || st.QueuedBytes > 100 {
			t.Fatalf("queue over its bounds: %+v", st)
		}
	}
}

// TestEngine_ManyConnections runs many clients at once, each pipelining
// messages; the recorder checks that handler calls never overlap per
// connection.
func TestEngine_ManyConnections(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		const conns, msgs = 100, 20
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			c := ts.dial(t, nil)
			wg.Go(func() {
				ctx := context.Background()
				for j := range msgs {
					if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "%d-%d", i, j)); err != nil {
						errs <- err
						return
					}
				}
				for j := range msgs {
					_, p, err := c.Read(ctx)
					if err != nil {
						errs <- err
						return
					}
					if want := fmt.Sprintf("%d-%d", i, j); string(p) != want {
						errs <- fmt.Errorf("got %q, want %q", p, want)
						return
					}
				}
				errs <- c.Close(websocket.StatusNormalClosure, "")
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for range conns {
			ts.h.next(t, "close")
		}
		if n := ts.engine.Len(); n != 0 {
			t.Fatalf("%d connections left", n)
		}
	})
}

func TestEngine_ShutdownAndClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{})
		var clients []*websocket.Conn
		for range 3 {
			clients = append(clients, ts.dial(t, nil))
		}
		for range 3 {
			ts.h.next(t, "open")
		}
		n := 0
		ts.engine.Range(func(*ws.Conn) bool { n++; return true })
		if n != 3 || ts.engine.Len() != 3 {
			t.Fatalf("Range saw %d, Len says %d", n, ts.engine.Len())
		}
		var readers sync.WaitGroup
		for _, c := range clients {
			readers.Go(func() {
				_, _, err := c.Read(context.Background())
				if got := websocket.CloseStatus(err); got != 4000 {
					t.Errorf("client saw %v", err)
				}
			})
		}
		if err := ts.engine.Shutdown(ctxT(t), 4000, "restarting"); err != nil {
			t.Fatal(err)
		}
		readers.Wait()
		for range 3 {
			if ce := closeErr(t, ts.h.next(t, "close").err); ce.Code != 4000 {
				t.Fatalf("OnClose: %+v", ce)
			}
		}

		// Close closes what is left without a handshake.
		rc := ts.dialRaw(t, nil)
		ts.h.next(t, "open")
		if err := ts.engine.Close(); err != nil {
			t.Fatal(err)
		}
		if ce := closeErr(t, ts.h.next(t, "close").err); !errors.Is(ce, ws.ErrEngineClosed) {
			t.Fatalf("OnClose: %+v", ce)
		}
		rc.expectEOF()
		a, b := net.Pipe()
		defer b.Close()
		if _, err := ts.engine.Serve(a, nil, ts.h, &connState{}); !errors.Is(err, ws.ErrEngineClosed) {
			t.Fatalf("Serve after Close: %v", err)
		}
	})
}

// TestEngine_NoMessagesAfterClose: once CloseWith was called, OnMessage is
// not called again even if the peer keeps sending.
func TestEngine_NoMessagesAfterClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{CloseTimeout: time.Second})
		rc := ts.dialRaw(t, nil)
		conn := ts.h.next(t, "open").conn
		if err := conn.CloseWith(ws.CloseGoingAway, ""); err != nil {
			t.Fatal(err)
		}
		rc.readUntil(ws.OpClose)
		rc.write(maskedFrame(ws.OpText, true, []byte("after close")))
		rc.write(maskedFrame(ws.OpClose, true, closeFramePayload(ws.CloseNormal, "")))
		for {
			ev := <-ts.h.events
			if ev.kind == "message" {
				t.Fatalf("message after close: %q", ev.data)
			}
			if ev.kind == "close" {
				if ce := closeErr(t, ev.err); ce.Code != ws.CloseGoingAway || !errors.Is(ce, ws.ErrLocalClose) {
					t.Fatalf("OnClose: %+v", ce)
				}
				return
			}
		}
	})
}

// TestEngine_ServeNonSocket: a connection without a file descriptor is
// served by a reader goroutine on every platform.
func TestEngine_ServeNonSocket(t *testing.T) {
	e, err := ws.NewEngine(ws.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	h := &recorder{t: t, events: make(chan event, 100), echo: true}
	server, client := net.Pipe()
	defer client.Close()
	if _, err := e.Serve(server, nil, h, &connState{}); err != nil {
		t.Fatal(err)
	}
	go client.Write(maskedFrame(ws.OpText, true, []byte("over a pipe")))
	rc := &rawClient{t: t, conn: client, br: newBufReader(client)}
	if f := rc.readUntil(ws.OpText); string(f.payload) != "over a pipe" {
		t.Fatalf("got %q", f.payload)
	}
}

func expect101(t *testing.T, rc *rawClient) {
	t.Helper()
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// setReadBuffer shrinks the client socket's receive buffer, so that a
// client that stops reading pushes back on the server quickly.
func setReadBuffer(nc net.Conn, n int) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(n)
	}
}

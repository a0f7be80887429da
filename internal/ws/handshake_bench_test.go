package ws_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ws"
)

// BenchmarkHandshake opens and closes one plain connection per op through
// net/http and the Engine (epoll), client in the same process: TCP connect,
// the upgrade request, the 101 and two frames OnOpen sends (a welcome and a
// snapshot), then the client closes. "upgrade" writes the 101 on its own
// (Upgrade + Serve), "deferred" with the frames (UpgradeDeferred +
// AdoptUpgraded + Run, as the gateway does). The time and allocations are
// both sides'.
func BenchmarkHandshake(b *testing.B) {
	if !ws.PollSupported {
		b.Skip("no epoll")
	}
	for _, deferred := range []bool{false, true} {
		name := "upgrade"
		if deferred {
			name = "deferred"
		}
		b.Run(name, func(b *testing.B) {
			welcome := []byte(`{"type":"welcome","session":"ses_1_abcdefgh"}`)
			snapshot := []byte(`{"type":"presence","online":[]}`)
			ts := startServer(b, transport{name: "plain-epoll"}, ws.Config{}, func(ts *testServer) {
				ts.deferred = deferred
				ts.handler = openSender{ts.h, func(c *ws.Conn) {
					_ = c.SendText(welcome)
					_ = c.SendText(snapshot)
				}}
			})
			// The recorder's events are not needed: drain them.
			stop := make(chan struct{})
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for {
					select {
					case <-ts.h.events:
					case <-stop:
						return
					}
				}
			}()
			defer func() { close(stop); <-drained }()
			req := []byte(upgradeRequest(""))
			want := len("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n") +
				2 + len(welcome) + 2 + len(snapshot)
			buf := make([]byte, want)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				nc, err := net.Dial("tcp", ts.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := nc.Write(req); err != nil {
					b.Fatal(err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(bufio.NewReaderSize(nc, 512), buf); err != nil {
					b.Fatal(err)
				}
				nc.Close()
			}
			b.StopTimer()
			for ts.engine.Len() > 0 { // the server notices the closes
				time.Sleep(time.Millisecond)
			}
		})
	}
}

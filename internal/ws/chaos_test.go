package ws_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ws"
)

// TestEngine_Chaos mixes client behaviours (vanish, protocol error, close
// frame, silence) with server-side broadcasts and closes racing them. Every
// connection must get exactly one OnClose (the recorder checks), and the
// Engine must end empty with no goroutine left (goleak in TestMain).
func TestEngine_Chaos(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{
			PingInterval: 20 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
			CloseTimeout: 100 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
			MaxQueueMessages: 16,
		})
		const n = 40
		stop := make(chan struct{})
		var server sync.WaitGroup
		server.Go(func() { // broadcasts and random closes, racing everything else
			rng := rand.New(rand.NewPCG(1, 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				pm := ws.NewPreparedMessage(true, []byte("broadcast"))
				ts.engine.Range(func(c *ws.Conn) bool {
					_ = c.SendPrepared(pm)
					if rng.IntN(200) == 0 {
						_ = c.CloseWith(4000, "chaos")
					}
					return true
				})
				time.Sleep(time.Millisecond)
			}
		})
		var clients sync.WaitGroup
		for i := range n {
			rc := ts.dialRaw(t, nil)
			clients.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				for range rng.IntN(5) {
					if _, err := rc.conn.Write(maskedFrame(ws.OpText, true, []byte("hi"))); err != nil {
						return
					}
				}
				switch i % 4 {
				case 0: // vanish
					rc.conn.Close()
				case 1: // protocol error
					rc.conn.Write([]byte{0x81, 0x01, 'x'})
				case 2: // close frame
					rc.conn.Write(maskedFrame(ws.OpClose, true, closeFramePayload(ws.CloseNormal, "")))
				case 3: // silence: never reads, never answers pings
				}
			})
		}
		clients.Wait()
		for range n {
			ts.h.next(t, "close")
		}
		close(stop)
		server.Wait()
		if l := ts.engine.Len(); l != 0 {
			t.Fatalf("%d connections left", l)
		}
	})
}

package ws_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ws"
)

// BenchmarkPreparedFanout broadcasts one message to 1,000 connections per
// operation: it frames the message once (NewPreparedMessage) and queues the
// same bytes on every connection; each connection's writer goroutine starts,
// writes and exits. The 1,000 clients are raw sockets read by goroutines in
// this process that count frames, so client work shares the 2 cores. The
// timer covers the broadcasts and the wait until every client has received
// every message.
func BenchmarkPreparedFanout(b *testing.B) {
	for _, tr := range []transport{{"plain", false, false}, {"tls", true, false}} {
		if !ws.PollSupported {
			tr.blocking = true
		}
		b.Run(tr.name, func(b *testing.B) { benchFanout(b, tr, 1000) })
	}
}

func benchFanout(b *testing.B, tr transport, n int) {
	ts := startServer(b, tr, ws.Config{PingInterval: -1, MaxQueueMessages: 4096, MaxQueueBytes: 4 << 20},
		func(ts *testServer) { ts.h.echo = false })
	received := make([]atomic.Int64, n)
	var readers sync.WaitGroup
	b.Cleanup(readers.Wait) // after the server (registered earlier) closes the sockets: cleanups run last-in first-out
	for i := range n {
		rc := ts.dialRaw(b, nil)
		readers.Go(func() { countFrames(rc.br, &received[i]) })
	}
	var conns []*ws.Conn
	for len(conns) < n {
		conns = append(conns, ts.h.next(b, "open").conn)
	}
	payload := []byte(`{"type":"message","channel":"general","seq":123456,"from":"alice","text":"hello, everyone"}`)
	var sent, full int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		pm := ws.NewPreparedMessage(true, payload)
		for _, c := range conns {
			if err := c.SendPrepared(pm); err != nil {
				full++
			} else {
				sent++
			}
		}
		if i%64 == 63 { // keep the queues from overflowing: wait for the slowest reader
			waitReceived(b, received, int64(i-256))
		}
	}
	var total int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		total = 0
		for i := range received {
			total += received[i].Load()
		}
		if total >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if total != sent {
		b.Fatalf("received %d of %d", total, sent)
	}
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(full), "queue-full")
}

func waitReceived(b *testing.B, received []atomic.Int64, min int64) {
	deadline := time.Now().Add(30 * time.Second)
	for i := range received {
		for received[i].Load() < min {
			if time.Now().After(deadline) {
				b.Fatalf("reader %d stuck at %d", i, received[i].Load())
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// countFrames reads server frames until the connection ends, counting data
// frames.
func countFrames(br *bufio.Reader, n *atomic.Int64) {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		size := uint64(hdr[1] & 0x7F)
		switch size {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return
			}
			size = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return
			}
			size = binary.BigEndian.Uint64(hdr[:8])
		}
		if _, err := br.Discard(int(size)); err != nil {
			return
		}
		if hdr[0]&0x0F == byte(ws.OpText) || hdr[0]&0x0F == byte(ws.OpBinary) {
			n.Add(1)
		}
	}
}

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

// BenchmarkPreparedFanout broadcasts a 94-byte JSON message to 1,000
// connections per operation: it frames the message once
// (NewPreparedMessage) and queues the same bytes on every connection. The
// 1,000 clients are raw sockets read by goroutines in this process that
// count frames, so client work shares the 2 cores.
//
//   - lockstep: each operation waits until every client has received the
//     message, so it measures one broadcast's delivery time to all 1,000
//     (queues are empty between operations: each connection's writer
//     goroutine starts, writes one frame and exits, every time);
//   - pipelined: broadcasts run ahead of delivery by up to 256 messages, so
//     writers find many frames queued and write them in one batch; the
//     timer also covers the final wait until everything is delivered.
func BenchmarkPreparedFanout(b *testing.B) {
	for _, tr := range []transport{{"plain", false, false}, {"tls", true, false}} {
		if !ws.PollSupported {
			tr.blocking = true
		}
		b.Run(tr.name, func(b *testing.B) {
			f := newFanout(b, tr, 1000)
			b.Run("lockstep", f.lockstep)
			b.Run("pipelined", f.pipelined)
		})
	}
}

type fanout struct {
	conns    []*ws.Conn
	received []atomic.Int64
	total    atomic.Int64
	target   atomic.Int64
	reached  chan struct{}
	payload  []byte
}

func newFanout(b *testing.B, tr transport, n int) *fanout {
	ts := startServer(b, tr, ws.Config{PingInterval: -1, MaxQueueMessages: 4096, MaxQueueBytes: 4 << 20},
		func(ts *testServer) { ts.h.echo = false })
	f := &fanout{
		received: make([]atomic.Int64, n),
		reached:  make(chan struct{}, 1),
		payload:  []byte(`{"type":"message","channel":"general","seq":123456,"from":"alice","text":"hello, everyone"}`),
	}
	var readers sync.WaitGroup
	b.Cleanup(readers.Wait) // after the server (registered earlier) closes the sockets: cleanups run last-in first-out
	for i := range n {
		rc := ts.dialRaw(b, nil)
		readers.Go(func() {
			countFrames(rc.br, func() {
				f.received[i].Add(1)
				if f.total.Add(1) == f.target.Load() {
					f.reached <- struct{}{}
				}
			})
		})
	}
	for len(f.conns) < n {
		f.conns = append(f.conns, ts.h.next(b, "open").conn)
	}
	return f
}

func (f *fanout) broadcast() (full int) {
	pm := ws.NewPreparedMessage(true, f.payload)
	for _, c := range f.conns {
		if err := c.SendPrepared(pm); err != nil {
			full++
		}
	}
	return full
}

func (f *fanout) waitTotal(b *testing.B, want int64) {
	f.target.Store(want)
	if f.total.Load() >= want {
		return
	}
	select {
	case <-f.reached:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", f.total.Load(), want)
	}
}

func (f *fanout) lockstep(b *testing.B) {
	b.ReportAllocs()
	n := int64(len(f.conns))
	for b.Loop() {
		want := f.total.Load() + n
		if full := f.broadcast(); full != 0 {
			b.Fatalf("%d queues full in lockstep", full)
		}
		f.waitTotal(b, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*n), "ns/delivery")
}

func (f *fanout) pipelined(b *testing.B) {
	b.ReportAllocs()
	n := int64(len(f.conns))
	base := f.total.Load()
	full := 0
	start := time.Now()
	for i := range b.N {
		full += f.broadcast()
		if i%64 == 63 { // keep the queues from overflowing: wait for the slowest reader
			f.waitEach(b, int64(i-256))
		}
	}
	sent := int64(b.N)*n - int64(full)
	f.waitTotal(b, base+sent)
	elapsed := time.Since(start)
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(sent), "ns/delivery")
	b.ReportMetric(float64(full), "queue-full")
}

// waitEach waits until every reader has received at least min frames since
// the start of the benchmark run.
func (f *fanout) waitEach(b *testing.B, min int64) {
	deadline := time.Now().Add(30 * time.Second)
	for i := range f.received {
		for f.received[i].Load() < min {
			if time.Now().After(deadline) {
				b.Fatalf("reader %d stuck at %d", i, f.received[i].Load())
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// countFrames reads server frames until the connection ends, calling
// onData for each data frame.
func countFrames(br *bufio.Reader, onData func()) {
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
			onData()
		}
	}
}

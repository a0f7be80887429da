package ws

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
)

// Flushers: the write side of plain epoll connections.
//
// A fan-out queues one frame on thousands of connections; writing each one
// at once costs a writev per frame, and on loopback about 60 % of the
// server's CPU went into those syscalls. Instead, a connection with
// something queued waits its turn in the ready list of one of a few
// flusher goroutines (one per CPU). A flusher takes its whole list and
// writes each connection's queue (everything queued by then, in one
// writev) without blocking; a connection that got more frames meanwhile
// goes to the back of the list. At low load a flusher is idle when the
// first frame arrives and writes it at once; when frames arrive faster than
// they can be written, each connection's turn comes less often and carries
// more frames, so the syscalls per frame fall exactly when they matter.
// No goroutine is started per write.
//
// A flusher never blocks on the network: when the socket takes less than
// the whole batch (its send buffer is full: a slow or stalled reader), the
// rest goes to a writer goroutine of the connection's own, which blocks with
// the write deadline and the stall rules as before, and keeps the
// connection until its queue is empty. Close frames and TLS connections
// (crypto/tls writes can block and cannot be made non-blocking) always use
// that goroutine.

// flusher is one flusher goroutine's ready list.
type flusher struct {
	mu    sync.Mutex
	ready []*Conn // connections with something to write, in arrival order
	spare []*Conn // the list being written, reused for the next round
	wake  chan struct{}

	writes atomic.Uint64 // writev calls made
	turns  atomic.Uint64 // connections taken from the list
}

// maxFlushers caps the number of flusher goroutines.
const maxFlushers = 16

// numFlushers is how many flushers an Engine starts: half of GOMAXPROCS
// (at least one). Writing is mostly the kernel's work inside writev, and a
// flusher holds its P through it; with a flusher per P a sustained fan-out
// kept every P writing, so the readers and the publishing path waited, and
// each flusher's turns came sooner and carried fewer frames. On 2 cores one
// flusher wrote 11-14 frames per writev where two wrote 6-7, for 0.7x the
// server CPU per delivery (docs/benchmarks.md, fan-out).
func numFlushers() int { return flushersFor(runtime.GOMAXPROCS(0)) }

func flushersFor(procs int) int { return min(max(procs/2, 1), maxFlushers) }

// push puts c at the back of the ready list and wakes the flusher if the
// list was empty.
func (f *flusher) push(c *Conn) {
	f.mu.Lock()
	f.ready = append(f.ready, c)
	first := len(f.ready) == 1
	f.mu.Unlock()
	if first {
		select {
		case f.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// run writes ready connections, a round at a time, until stop is closed.
func (f *flusher) run(stop <-chan struct{}) {
	var batch net.Buffers
	for {
		f.mu.Lock()
		round := f.ready
		f.ready = f.spare[:0]
		f.spare = nil
		f.mu.Unlock()
		if len(round) == 0 {
			f.mu.Lock()
			f.spare = round
			f.mu.Unlock()
			select {
			case <-f.wake:
				continue
			case <-stop:
				return
			}
		}
		for _, c := range round {
			batch = f.flushOnce(c, batch)
		}
		f.turns.Add(uint64(len(round)))
		clear(round)
		f.mu.Lock()
		if f.spare == nil {
			f.spare = round[:0]
		}
		f.mu.Unlock()
	}
}

// outBatch is a batch of frames taken from a connection's queue.
type outBatch struct {
	bufs      net.Buffers
	dataMsgs  int   // data frames in bufs (the rest are control frames)
	dataBytes int64 // their bytes, as counted in queuedBytes
	closing   bool  // the last frame is our close frame
	headLeft  int   // bytes of the 101 response at the front still to write: not WebSocket bytes
}

// countOut adds the WebSocket bytes among n written bytes of b to c's
// counter (the 101 response at the front is not counted).
func (b *outBatch) countOut(c *Conn, n int) {
	skip := min(n, b.headLeft)
	b.headLeft -= skip
	c.bytesOut.Add(uint64(n - skip))
}

// takeLocked moves everything waiting to be written into b.bufs: the 101
// response if it is still waiting, a pending pong and ping, then the queued frames, then our close frame.
func (c *Conn) takeLocked(b *outBatch) {
	b.bufs = b.bufs[:0]
	b.headLeft = 0
	if c.head != nil {
		b.headLeft = len(*c.head)
		b.bufs = append(b.bufs, *c.head)
		c.head = nil
	}
	if c.pong != nil {
		b.bufs = append(b.bufs, c.pong)
		c.pong = nil
	}
	if c.pingDue {
		b.bufs = append(b.bufs, pingFrame)
		c.pingDue = false
	}
	b.dataMsgs = len(c.queue)
	b.dataBytes = 0
	for _, f := range c.queue {
		b.dataBytes += int64(len(f))
	}
	b.bufs = append(b.bufs, c.queue...)
	clear(c.queue)
	c.queue = c.queue[:0]
	b.closing = c.closeFrame != nil
	if b.closing {
		b.bufs = append(b.bufs, c.closeFrame)
		c.closeFrame = nil
	}
}

// pendingLocked reports whether anything waits to be written.
func (c *Conn) pendingLocked() bool {
	return c.head != nil || len(c.queue) > 0 || c.pong != nil || c.pingDue || c.closeFrame != nil
}

// batchWritten settles the counters once b's data frames left.
func (c *Conn) batchWritten(b *outBatch) {
	c.queuedBytes.Add(-b.dataBytes)
	c.queuedMsgs.Add(-int64(b.dataMsgs))
}

// flushOnce is a flusher's turn for c: it writes everything c has queued
// without blocking, and puts c back in line if more arrived meanwhile. buf
// is the flusher's reusable slice; the (possibly grown) slice is returned.
func (f *flusher) flushOnce(c *Conn, buf net.Buffers) net.Buffers {
	b := outBatch{bufs: buf}
	c.mu.Lock()
	if c.finalized {
		c.writing = false
		c.mu.Unlock()
		return buf
	}
	c.takeLocked(&b)
	if len(b.bufs) == 0 {
		c.writing = false
		c.releaseQueueLocked()
		c.mu.Unlock()
		return b.bufs
	}
	if b.closing {
		// The close handshake follows the write (half-close, maybe
		// OnClose): not on a flusher.
		c.engine.wg.Add(1)
		c.mu.Unlock()
		go c.writeLoop(b.detach(0))
		return b.bufs[:0]
	}
	c.mu.Unlock()

	n, err := rawWritev(c.rc, b.bufs)
	b.countOut(c, n)
	f.writes.Add(1)
	switch {
	case errors.Is(err, errWouldBlock):
		// The socket is full: a goroutine of its own waits for it, with
		// the write deadline and the stall rules.
		c.engine.wg.Add(1) // this flusher is counted: the WaitGroup is not at zero
		go c.writeLoop(b.detach(n))
		clear(b.bufs)
		return b.bufs[:0]
	case err != nil:
		c.batchWritten(&b)
		clear(b.bufs)
		// Tearing down may run OnClose: not on a flusher.
		c.engine.wg.Add(1)
		go func() {
			defer c.engine.wg.Done()
			c.requestFinalize(&CloseError{Code: CloseAbnormal, Err: fmt.Errorf("%w: %w", ErrWrite, err)})
			c.stopWriting()
		}()
		return b.bufs[:0]
	}
	c.batchWritten(&b)
	c.msgsOut.Add(uint64(b.dataMsgs))
	clear(b.bufs)
	c.mu.Lock()
	more := !c.finalized && c.pendingLocked()
	if !more {
		c.writing = false
		c.releaseQueueLocked()
	}
	c.mu.Unlock()
	if more {
		f.push(c) // to the back of the line: its next batch grows meanwhile
	}
	return b.bufs[:0]
}

// detach returns a copy of b without its first n bytes, for a writer
// goroutine to finish (b's slice belongs to the flusher).
func (b *outBatch) detach(n int) *outBatch {
	out := &outBatch{dataMsgs: b.dataMsgs, dataBytes: b.dataBytes, closing: b.closing, headLeft: b.headLeft}
	for _, f := range b.bufs {
		if n >= len(f) {
			n -= len(f)
			continue
		}
		out.bufs = append(out.bufs, f[n:])
		n = 0
	}
	return out
}

// flusher returns the flusher that writes c.
func (c *Conn) flusher() *flusher {
	fs := c.engine.flushers
	return &fs[c.id%uint64(len(fs))]
}

// FlushStats is how many socket writes the Engine made and how many
// connection turns its flushers took, since it started: writes per frame
// sent is the figure write coalescing lowers.
type FlushStats struct {
	Writes uint64 // socket writes that carried frames (one writev, or one TLS write call)
	Turns  uint64 // connections written by flushers (plain epoll connections)
}

// FlushStats returns the Engine's write counters.
func (e *Engine) FlushStats() FlushStats {
	s := FlushStats{Writes: e.writes.Load()}
	for i := range e.flushers {
		s.Writes += e.flushers[i].writes.Load()
		s.Turns += e.flushers[i].turns.Load()
	}
	return s
}

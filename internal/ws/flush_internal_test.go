//go:build linux

package ws

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// flushPair returns a Conn on the server end of a loopback TCP pair, on an
// Engine whose one flusher is not running (the test takes its turns), and
// the client end.
func flushPair(t *testing.T, cfg Config) (*Conn, *flusher, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); sc.Close() })
	tcp := sc.(*net.TCPConn)
	rc, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{cfg: cfg.withDefaults(), flushers: make([]flusher, 1)}
	e.flushers[0].wake = make(chan struct{}, 1)
	c := &Conn{engine: e, id: 7, conn: tcp, sock: tcp, writeTo: tcp, rc: rc, mode: readRawFD}
	return c, &e.flushers[0], client
}

// turn takes the flusher's round, which must be just c, and writes it.
func (f *flusher) turn(t *testing.T, c *Conn) {
	t.Helper()
	if len(f.ready) != 1 || f.ready[0] != c {
		t.Fatalf("ready list %v, want the connection once", f.ready)
	}
	f.ready = nil
	f.flushOnce(c, nil)
}

// readFrames reads n unmasked text frames of up to 125 bytes.
func readFrames(t *testing.T, r io.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, hdr[1]&0x7F)
		if _, err := io.ReadFull(r, p); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(p))
	}
	return out
}

// TestFlusher_OneWritePerTurn: frames queued while a connection waits for
// its flusher's turn go out together, in one writev, in order; the
// connection joins the ready list once however many frames it gets, and
// leaves the write side idle afterwards. A write deadline a writer
// goroutine left behind (already past) does not fail the write.
func TestFlusher_OneWritePerTurn(t *testing.T) {
	c, f, client := flushPair(t, Config{})
	c.writeDeadline = time.Unix(1, 0)
	if err := c.conn.SetWriteDeadline(c.writeDeadline); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two", "three"} {
		if err := c.SendText([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	f.turn(t, c)
	if w := f.writes.Load(); w != 1 {
		t.Fatalf("%d writes for three queued frames, want 1", w)
	}
	if got := readFrames(t, client, 3); got[0] != "one" || got[1] != "two" || got[2] != "three" {
		t.Fatalf("frames %q", got)
	}
	if st := c.Stats(); st.QueuedMsgs != 0 || st.QueuedBytes != 0 || st.MessagesOut != 3 {
		t.Fatalf("after the turn: %+v", st)
	}
	c.mu.Lock()
	writing, queue := c.writing, c.queue
	c.mu.Unlock()
	if writing || queue != nil || len(f.ready) != 0 {
		t.Fatalf("writing=%v queue=%v after an empty turn, want idle", writing, queue)
	}
}

// TestFlusher_FullSocketGoesToWriter: a batch the socket cannot take at
// once is finished by the connection's own writer goroutine (the flusher
// never waits); every byte arrives once, in order, and the connection is
// idle again afterwards.
func TestFlusher_FullSocketGoesToWriter(t *testing.T) {
	c, f, client := flushPair(t, Config{SendBuffer: 4 << 10})
	if err := c.sock.(*net.TCPConn).SetWriteBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	const frames = 16
	var want bytes.Buffer
	for i := range frames {
		p := bytes.Repeat([]byte{'a' + byte(i)}, 32<<10)
		want.Write(AppendFrame(nil, OpText, true, p))
		if err := c.SendText(p); err != nil {
			t.Fatal(err)
		}
	}
	f.turn(t, c) // 512 KiB into a 4 KiB send buffer nobody reads yet
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes differ from the frames queued")
	}
	c.engine.wg.Wait() // the writer goroutine
	if st := c.Stats(); st.QueuedMsgs != 0 || st.QueuedBytes != 0 || st.MessagesOut != frames || st.BytesOut != uint64(want.Len()) {
		t.Fatalf("after the write: %+v", st)
	}
	c.mu.Lock()
	writing := c.writing
	c.mu.Unlock()
	if writing || len(f.ready) != 0 {
		t.Fatalf("writing=%v ready=%d, want idle", writing, len(f.ready))
	}
}

func TestFlushersFor(t *testing.T) {
	for _, c := range []struct{ procs, want int }{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 2}, {8, 4}, {32, 16}, {64, maxFlushers}} {
		if got := flushersFor(c.procs); got != c.want {
			t.Errorf("flushersFor(%d) = %d, want %d", c.procs, got, c.want)
		}
	}
}

// TestReleaseQueue_ClearsPooledArray: a queue array given back to the pool
// keeps no frame alive, and one that outgrew the pooled size is dropped.
func TestReleaseQueue_ClearsPooledArray(t *testing.T) {
	c := &Conn{}
	a := new([queueArrayLen][]byte)
	c.queue = a[:0]
	for i := range 3 {
		c.queue = append(c.queue, []byte{byte(i)})
	}
	c.releaseQueueLocked()
	if c.queue != nil {
		t.Fatalf("queue %v after release, want nil", c.queue)
	}
	for i, f := range a {
		if f != nil {
			t.Fatalf("pooled array keeps frame %d: %v", i, f)
		}
	}
	c.queue = a[:0]
	for range queueArrayLen + 1 { // outgrows the array: append moves it
		c.queue = append(c.queue, []byte("x"))
	}
	if cap(c.queue) == queueArrayLen {
		t.Fatalf("cap %d, want a grown array", cap(c.queue))
	}
	c.releaseQueueLocked()
	if c.queue != nil {
		t.Fatal("grown queue kept after release")
	}
}

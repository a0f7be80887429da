//go:build linux

package ws

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollSupported reports whether this platform has the epoll read path.
const pollSupported = true

// poller is the Engine's own epoll instance. Connections are registered
// with EPOLLONESHOT: an event disarms the connection until the goroutine
// that handled it re-arms it, so at most one goroutine reads a connection at
// a time and an idle connection costs no goroutine. The event carries the
// connection's ID rather than its file descriptor, so a late event for a
// closed connection whose descriptor number was reused finds nothing.
type poller struct {
	epfd    int
	wakefd  int // eventfd that interrupts epoll_wait when closing
	closing atomic.Bool
}

// wakeID is the event ID of wakefd; connection IDs start at 1.
const wakeID = 0

// armEvents are the events a connection waits for once armed.
const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ws: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("ws: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, wakeID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("ws: epoll_ctl add eventfd: %w", err)
	}
	return &poller{epfd: epfd, wakefd: wakefd}, nil
}

func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// addArmed registers a connection, waiting for it to become readable
// (once); arm waits again after an event.
func (p *poller) addArmed(rc syscall.RawConn, id uint64) error {
	return p.ctl(rc, unix.EPOLL_CTL_ADD, armEvents, id)
}

// arm waits for a registered connection to become readable (once).
func (p *poller) arm(rc syscall.RawConn, id uint64) error {
	return p.ctl(rc, unix.EPOLL_CTL_MOD, armEvents, id)
}

// remove unregisters a connection; closing the socket would too, but only
// once every duplicate of the descriptor is closed.
func (p *poller) remove(rc syscall.RawConn) {
	_ = p.ctl(rc, unix.EPOLL_CTL_DEL, 0, 0)
}

// ctl runs epoll_ctl through RawConn.Control, which holds a reference on the
// descriptor: it is never closed (and its number reused) while we use it,
// and once the connection is closed Control fails instead.
func (p *poller) ctl(rc syscall.RawConn, op int, events uint32, id uint64) error {
	var opErr error
	err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: events}
		setEventID(&ev, id)
		opErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return fmt.Errorf("ws: epoll_ctl: %w", err)
	}
	if opErr != nil {
		return fmt.Errorf("ws: epoll_ctl: %w", opErr)
	}
	return nil
}

// run waits for events and hands each connection ID to dispatch, until
// wake is called. dispatch must not block.
func (p *poller) run(dispatch func(id uint64)) error {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("ws: epoll_wait: %w", err)
		}
		for i := range n {
			id := eventID(&events[i])
			if id == wakeID {
				if p.closing.Load() {
					return nil
				}
				continue
			}
			dispatch(id)
		}
	}
}

// wake makes run return.
func (p *poller) wake() {
	p.closing.Store(true)
	var one [8]byte
	one[0] = 1 // eventfd counters are host-endian; any non-zero value wakes
	_, _ = unix.Write(p.wakefd, one[:])
}

// close releases the descriptors; run must have returned.
func (p *poller) close() {
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
}

// rawReader carries one non-blocking read(2) through RawConn.Read; pooling
// it keeps that call free of allocations.
type rawReader struct {
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var rawReaders = sync.Pool{New: func() any {
	r := &rawReader{}
	r.fn = r.read
	return r
}}

func (r *rawReader) read(fd uintptr) bool {
	for {
		r.n, r.err = unix.Read(int(fd), r.p)
		if r.err != unix.EINTR {
			return true // never let the runtime wait: EAGAIN goes back to the caller
		}
	}
}

// rawRead reads what the socket holds now without waiting: it returns
// errWouldBlock when there is nothing, io.EOF when the peer closed. It works
// whatever read deadline is set, but not on a connection whose deadline has
// passed (the runtime refuses before calling us), so the Engine clears it.
func rawRead(rc syscall.RawConn, p []byte) (int, error) {
	r := rawReaders.Get().(*rawReader)
	r.p = p
	err := rc.Read(r.fn)
	n, rerr := r.n, r.err
	r.p, r.n, r.err = nil, 0, nil
	rawReaders.Put(r)
	switch {
	case err != nil:
		return 0, err
	case rerr == unix.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// maxIovecs is the most buffers one writev(2) takes (IOV_MAX).
const maxIovecs = 1024

// rawWriter carries one non-blocking writev through RawConn.Control; pooled
// like rawReader. It builds the iovec array itself, in iov, reused from call
// to call: unix.Writev allocates one per call, which was a quarter of the
// bytes a fan-out allocated.
type rawWriter struct {
	bufs [][]byte
	iov  []unix.Iovec
	n    int
	err  error
	fn   func(fd uintptr)
}

var rawWriters = sync.Pool{New: func() any {
	w := &rawWriter{}
	w.fn = w.write
	return w
}}

func (w *rawWriter) write(fd uintptr) {
	for len(w.bufs) > 0 {
		chunk := w.bufs[:min(len(w.bufs), maxIovecs)]
		m, err := w.writev(fd, chunk)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			w.err = err // EAGAIN included: the caller decides, nobody waits here
			return
		}
		w.n += m
		for _, b := range chunk {
			m -= len(b)
		}
		if m < 0 { // the socket took part of it: its send buffer is full
			w.err = unix.EAGAIN
			return
		}
		w.bufs = w.bufs[len(chunk):]
	}
}

// writev is one writev(2) of chunk (at most maxIovecs buffers).
func (w *rawWriter) writev(fd uintptr, chunk [][]byte) (int, error) {
	iov := w.iov[:0]
	for _, b := range chunk {
		var v unix.Iovec
		if len(b) > 0 {
			v.Base = &b[0]
			v.SetLen(len(b))
		}
		iov = append(iov, v)
	}
	w.iov = iov
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	clear(iov) // the pooled array must not keep the frames alive
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawWritev writes bufs with writev(2) without waiting: it returns how many
// bytes the socket took, and errWouldBlock if that was not all of them. It
// goes through RawConn.Control, which holds a reference on the descriptor
// (it cannot be closed and its number reused meanwhile) but, unlike
// RawConn.Write, takes no write lock and consults no deadline: the caller
// is the connection's only writer (Conn.writing), and a flusher's write
// never waits. That was 6 % of the server's CPU in a fan-out profile.
func rawWritev(rc syscall.RawConn, bufs [][]byte) (int, error) {
	w := rawWriters.Get().(*rawWriter)
	w.bufs = bufs
	err := rc.Control(w.fn)
	n, werr := w.n, w.err
	w.bufs, w.n, w.err = nil, 0, nil
	rawWriters.Put(w)
	switch {
	case err != nil:
		return n, err
	case werr == unix.EAGAIN:
		return n, errWouldBlock
	case werr != nil:
		return n, os.NewSyscallError("writev", werr)
	}
	return n, nil
}

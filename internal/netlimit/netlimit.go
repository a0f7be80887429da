// Package netlimit caps concurrent TCP connections per client address at
// accept time, before TLS and HTTP spend anything on them, and keeps the
// process below its open-file limit so that accept never fails for lack
// of descriptors (net/http then backs off for up to a second per failure,
// stalling every client, health checks included).
package netlimit

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener wraps a TCP listener. Connections over a limit are closed as
// soon as they are accepted and counted; Accept goes on with the next.
type Listener struct {
	net.Listener
	perAddr int // concurrent connections per address (IPv6: per /64)
	total   int // concurrent connections in all
	log     *slog.Logger
	exempt  []netip.Prefix // trusted proxies: many clients behind one address

	mu     sync.Mutex
	byAddr map[netip.Addr]int // guarded by mu
	open   int                // guarded by mu

	refused  *prometheus.CounterVec
	acceptEr prometheus.Counter
	lastWarn atomic.Int64 // unix nanos of the last accept-error warning
	quiet    atomic.Int64 // accept errors not logged since
}

// Wrap returns l limited to perAddr connections per client address and
// total in all (zero: no limit of that kind). Addresses in exempt (trusted
// proxies, which carry many clients) have no per-address cap.
func Wrap(l net.Listener, perAddr, total int, exempt []netip.Prefix, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: l, perAddr: perAddr, total: total, exempt: exempt, log: log, byAddr: map[netip.Addr]int{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unhidra_tcp_refused_total",
			Help: "TCP connections closed at accept time: per-address cap (addr_cap) or process cap (total_cap)."}, []string{"reason"}),
		acceptEr: prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_tcp_accept_errors_total",
			Help: "Errors accepting TCP connections (e.g. out of file descriptors)."}),
	}
}

// Collectors returns the listener's metrics.
func (l *Listener) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.refused, l.acceptEr}
}

// Accept returns the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.acceptError(err)
			}
			return nil, err
		}
		addr := key(c.RemoteAddr())
		if reason := l.acquire(addr); reason != "" {
			l.refused.WithLabelValues(reason).Inc()
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset: no TIME_WAIT kept for a refused peer
			}
			c.Close()
			continue
		}
		return &conn{Conn: c, l: l, addr: addr}, nil
	}
}

// Open returns the number of connections held.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) acquire(a netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total > 0 && l.open >= l.total:
		return "total_cap"
	case l.perAddr > 0 && l.byAddr[a] >= l.perAddr && !l.exempted(a):
		return "addr_cap"
	}
	l.open++
	l.byAddr[a]++
	return ""
}

func (l *Listener) exempted(a netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (l *Listener) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[a]--; l.byAddr[a] <= 0 {
		delete(l.byAddr, a)
	}
}

// acceptError logs at WARN, at most once per 5 s, with how many were not
// logged in between.
func (l *Listener) acceptError(err error) {
	l.acceptEr.Inc()
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(5*time.Second) || !l.lastWarn.CompareAndSwap(last, now) {
		l.quiet.Add(1)
		return
	}
	l.log.Warn("accept failed (new connections wait; raise the open-file limit or lower the connection caps)",
		"err", err, "suppressed", l.quiet.Swap(0))
}

// key is the address a connection counts against: the IP, or its /64
// for IPv6 (one host usually holds a whole /64).
func key(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// conn releases its slot once when closed.
type conn struct {
	net.Conn
	l    *Listener
	addr netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

// NetConn returns the accepted connection (writev needs the *net.TCPConn).
func (c *conn) NetConn() net.Conn { return c.Conn }

// SyscallConn exposes the socket for the WebSocket engine's poller.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("netlimit: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// CloseWrite half-closes the socket.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

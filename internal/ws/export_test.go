package ws

import (
	"crypto/tls"
	"fmt"
	"net"
)

// WithBlockingReads returns cfg set to read every connection with a goroutine
// of its own, the portable path, so that tests exercise it on Linux too.
func WithBlockingReads(cfg Config) Config {
	cfg.blockingReads = true
	return cfg
}

// PollSupported reports whether the epoll path exists on this platform.
const PollSupported = pollSupported

// IsWouldBlock reports whether err is the non-blocking read's "no data yet".
func IsWouldBlock(err error) bool { return isWouldBlock(err) }

// SetNonblocking switches a connection accepted through WrapListener to
// non-blocking reads, as Engine.Serve does.
func SetNonblocking(c any) bool {
	pc, ok := c.(*pollConn)
	if ok {
		pc.nonblocking.Store(true)
	}
	return ok
}

// SetWriteBuffer sets SO_SNDBUF on the TCP socket under nc (a hijacked
// connection: *tls.Conn, a WrapListener connection, or *net.TCPConn).
func SetWriteBuffer(nc net.Conn, n int) error {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if pc, ok := nc.(*pollConn); ok {
		nc = pc.Conn
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		return fmt.Errorf("not TCP: %T", nc)
	}
	return tcp.SetWriteBuffer(n)
}

package ws

import (
	"net"
	"sync/atomic"
	"syscall"
)

// WrapListener returns a listener whose accepted connections an Engine can
// read without a goroutine per connection, TLS included. Use it under
// tls.NewListener (or alone for plain TCP):
//
//	srv.Serve(tls.NewListener(ws.WrapListener(tcpListener), tlsConfig))
//
// Until Engine.Serve takes a connection over, the wrapper is transparent:
// net/http and crypto/tls do the TLS handshake and read the upgrade request
// through ordinary blocking reads. Afterwards its reads become non-blocking
// and report "no data yet" as a net.Error whose Timeout and Temporary methods
// return true, which crypto/tls passes up without recording it as a fatal
// error; the Engine then waits for the socket with epoll.
//
// Connections that do not expose a file descriptor are passed through
// unwrapped (the Engine then reads them with a goroutine each).
func WrapListener(l net.Listener) net.Listener { return &listener{l} }

type listener struct{ net.Listener }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &pollConn{Conn: c, rc: rc}, nil
}

// pollConn is a connection accepted by WrapListener's listener.
type pollConn struct {
	net.Conn
	rc          syscall.RawConn
	nonblocking atomic.Bool
}

// Read reads like the wrapped connection until the Engine switches the
// connection to non-blocking mode; then it returns what the socket has now,
// or errWouldBlock.
func (c *pollConn) Read(p []byte) (int, error) {
	if !c.nonblocking.Load() {
		return c.Conn.Read(p)
	}
	return rawRead(c.rc, p)
}

// CloseWrite half-closes the socket when the wrapped connection supports it.
func (c *pollConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn exposes the socket's file descriptor.
func (c *pollConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// wouldBlockError is what a non-blocking read returns when the socket has
// nothing to read. crypto/tls only records a read error as permanent when it
// is not a net.Error with Temporary() true, so both methods must say true.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "ws: read would block" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlockError{}

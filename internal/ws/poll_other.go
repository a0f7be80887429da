//go:build !linux

package ws

import (
	"errors"
	"syscall"
)

// pollSupported reports whether this platform has the epoll read path. Here
// it does not: every connection is read by a goroutine of its own
// (reader_blocking.go), which is correct everywhere but costs that
// goroutine's stack and a read buffer per connection.
const pollSupported = false

var errNoPoller = errors.New("ws: no poller on this platform")

type poller struct{}

func newPoller() (*poller, error)                      { return nil, errNoPoller }
func (*poller) addArmed(syscall.RawConn, uint64) error { return errNoPoller }
func (*poller) arm(syscall.RawConn, uint64) error      { return errNoPoller }
func (*poller) remove(syscall.RawConn)                 {}
func (*poller) run(func(uint64)) error                 { return errNoPoller }
func (*poller) wake()                                  {}
func (*poller) close()                                 {}
func rawRead(syscall.RawConn, []byte) (int, error)     { return 0, errNoPoller }
func rawWritev(syscall.RawConn, [][]byte) (int, error) { return 0, errNoPoller }

// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): a datagram of newline-separated KEY=VALUE lines to the
// unix socket named by $NOTIFY_SOCKET. With Type=notify a unit is started
// once the service sends READY=1; with WatchdogSec= systemd restarts it
// when WATCHDOG=1 stops arriving. Without $NOTIFY_SOCKET every call is a
// no-op, so the server runs the same outside systemd.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends notifications to one socket.
type Notifier struct {
	addr     *net.UnixAddr // nil: not under systemd
	watchdog time.Duration // 0: no watchdog
}

// FromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. The watchdog
// applies only when WATCHDOG_PID is unset or names this process (pid).
func FromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	n := &Notifier{}
	if sock := getenv("NOTIFY_SOCKET"); sock != "" {
		if !strings.HasPrefix(sock, "/") && !strings.HasPrefix(sock, "@") {
			return nil, fmt.Errorf("NOTIFY_SOCKET %q: not a unix socket path", sock)
		}
		name := sock
		if strings.HasPrefix(sock, "@") {
			name = "\x00" + sock[1:] // abstract namespace
		}
		n.addr = &net.UnixAddr{Name: name, Net: "unixgram"}
	}
	if us := getenv("WATCHDOG_USEC"); us != "" && n.addr != nil {
		if wp := getenv("WATCHDOG_PID"); wp != "" && wp != strconv.Itoa(pid) {
			return n, nil
		}
		v, err := strconv.ParseInt(us, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC %q: not a positive integer", us)
		}
		n.watchdog = time.Duration(v) * time.Microsecond
	}
	return n, nil
}

// Enabled reports whether a notification socket is configured.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Watchdog returns the watchdog timeout systemd expects pings within, or 0.
func (n *Notifier) Watchdog() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends state lines such as "READY=1" or "STATUS=serving".
func (n *Notifier) Notify(state ...string) error {
	if !n.Enabled() {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(state, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// RunWatchdog sends WATCHDOG=1 every half watchdog period while healthy()
// reports true, until ctx ends. It returns at once without a watchdog.
func (n *Notifier) RunWatchdog(ctx context.Context, healthy func() bool) {
	if n.Watchdog() == 0 {
		return
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		if healthy() {
			n.Notify("WATCHDOG=1")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// NATSServer is a nats-server process a test owns (never the shared one),
// on a port of its own, that the test can stop and start again.
type NATSServer struct {
	tb   testing.TB
	bin  string
	Port int
	URL  string
	cmd  *exec.Cmd
}

// StartNATS starts a private nats-server on a free port; it is stopped at
// the end of the test. The binary is the Debian package's (scripts/setup.sh
// installs it); without it the test fails.
func StartNATS(tb testing.TB) *NATSServer {
	tb.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil {
			tb.Fatalf("nats-server is required (apt install nats-server, or run `make setup`): %v", err)
		}
		bin = "/usr/sbin/nats-server"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &NATSServer{tb: tb, bin: bin, Port: port, URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its port and waits until it accepts
// connections.
func (s *NATSServer) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.Port))
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start nats-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("nats-server on port %d did not start: %v", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: no goodbye to its clients) and waits for
// it to exit.
func (s *NATSServer) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/agent"
	"github.com/unhidra/unhidra/protocol"
)

// device is one simulated firmware. Its state is owned by its goroutine
// (run); the timers' callbacks only read the immutable fields and the
// atomics of the fleet.
type device struct {
	f      *fleet
	key    string
	client *http.Client
	uptime time.Duration // fake uptime at the start of the run
	heap   uint64        // fake free heap; shrinks with each heartbeat (guarded by session.mu)
	boot   time.Time
}

// stableAfter resets the backoff, as the agent does.
const stableAfter = 60 * time.Second

// run connects, reconnects with backoff, and returns when ctx ends or the
// server ends the device's session for good.
func (d *device) run(ctx context.Context) {
	d.boot = time.Now().Add(-d.uptime)
	attempt := 0
	for n := 0; ctx.Err() == nil; n++ {
		lasted, retryAfter, terminal, err := d.session(ctx, n > 0)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.f.recordError(d.key, err)
		}
		if terminal && d.f.opts.Fault != FaultReconnectAfterTerminal {
			d.f.terminal.Add(1)
			return
		}
		if lasted >= stableAfter {
			attempt = 0
		}
		delay := max(d.f.opts.Backoff.Delay(attempt, rand.Float64), min(retryAfter, 15*time.Minute))
		if d.f.opts.Fault == FaultNoBackoff {
			delay = 0
		}
		attempt = min(attempt+1, 64)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session is one connection: handshake, welcome, then the firmware's
// schedule until the link ends.
func (d *device) session(ctx context.Context, reconnect bool) (lasted, retryAfter time.Duration, terminal bool, err error) {
	f, o := d.f, d.f.opts
	select {
	case f.dialing <- struct{}{}:
	case <-ctx.Done():
		return 0, 0, false, nil
	}
	hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	start := time.Now()
	protocols := []string{d.key}
	if o.Fault == FaultHandshake {
		protocols = []string{"unhidra.v1", d.key}
	}
	conn, resp, err := websocket.Dial(hctx, o.URL, &websocket.DialOptions{HTTPClient: d.client, Subprotocols: protocols})
	<-f.dialing
	if err != nil {
		if resp != nil {
			switch resp.StatusCode {
			case http.StatusUnauthorized, http.StatusForbidden:
				return 0, 0, true, fmt.Errorf("handshake refused: HTTP %d", resp.StatusCode)
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				if s, perr := strconv.ParseUint(strings.TrimSpace(resp.Header.Get("Retry-After")), 10, 32); perr == nil {
					retryAfter = time.Duration(s) * time.Second
				}
			}
		}
		return 0, retryAfter, false, fmt.Errorf("handshake: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 10)
	typ, data, err := conn.Read(hctx)
	if err != nil {
		return 0, 0, false, fmt.Errorf("welcome: %w", err)
	}
	devID, err := welcomeID(typ, data)
	if err != nil {
		conn.Close(websocket.StatusPolicyViolation, "expected a welcome")
		return 0, 0, false, err
	}
	f.recordLatency(time.Since(start))
	f.handshakes.Add(1)
	if reconnect {
		f.reconnects.Add(1)
	}
	if c := f.connected.Add(1); c > f.peak.Load() {
		for p := f.peak.Load(); c > p && !f.peak.CompareAndSwap(p, c); p = f.peak.Load() {
		}
	}
	defer f.connected.Add(-1)
	connectedAt := time.Now()

	s := &session{d: d, conn: conn, devID: devID}
	// The reader below owns the connection; its Read context is separate
	// from ctx so that the end of the run closes politely (1001) instead of
	// tearing the socket down mid-read.
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	s.heartbeat()
	s.hb = time.AfterFunc(s.heartbeatEvery(), func() { s.guard(s.heartbeatTick) })
	s.ping = time.AfterFunc(o.PingInterval, func() { s.guard(s.pingTick) })
	stopClose := context.AfterFunc(ctx, func() { s.guard(func() { conn.Close(websocket.StatusGoingAway, "simulation over") }) })
	defer s.end(stopClose)

	for {
		typ, data, err := conn.Read(rctx)
		if err != nil {
			lasted = time.Since(connectedAt)
			if ctx.Err() != nil {
				return lasted, 0, false, nil
			}
			if code := int(websocket.CloseStatus(err)); code >= 0 {
				return lasted, 0, agent.Terminal(code), fmt.Errorf("closed by the server: %d", code)
			}
			return lasted, 0, false, fmt.Errorf("read: %w", err)
		}
		if typ == websocket.MessageText {
			s.handle(data)
		}
	}
}

// session is one connected device's timers and their bookkeeping.
type session struct {
	d     *device
	conn  *websocket.Conn
	devID string
	hb    *time.Timer
	ping  *time.Timer

	mu     sync.Mutex // guards closed, wg.Add and the device's heap
	closed bool
	wg     sync.WaitGroup // running timer callbacks
}

// guard runs fn unless the session has ended, and lets end wait for it:
// the callbacks of time.AfterFunc have no other owner.
func (s *session) guard(fn func()) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	fn()
}

// end stops the timers and waits for callbacks in flight.
func (s *session) end(stopClose func() bool) {
	stopClose()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.hb.Stop()
	s.ping.Stop()
	s.conn.CloseNow() // unblocks a ping waiting for its pong
	s.wg.Wait()
}

func (s *session) heartbeatTick() {
	s.heartbeat()
	s.hb.Reset(s.heartbeatEvery())
}

// heartbeatEvery is the firmware's heartbeat period (30 % late with
// FaultLateHeartbeats).
func (s *session) heartbeatEvery() time.Duration {
	if s.d.f.opts.Fault == FaultLateHeartbeats {
		return s.d.f.opts.HeartbeatInterval * 13 / 10
	}
	return s.d.f.opts.HeartbeatInterval
}

// heartbeat sends the firmware's heartbeat: ts is seconds since (fake)
// boot, free_heap shrinks a little each time, as a leaking device's would.
func (s *session) heartbeat() {
	s.mu.Lock()
	if s.d.heap > 40000 {
		s.d.heap -= 8 + uint64(rand.IntN(56))
	}
	heap := s.d.heap
	s.mu.Unlock()
	ts := int64(time.Since(s.d.boot) / time.Second)
	b := fmt.Appendf(nil, `{"type":%q,"device_id":%s,"ts":%d,"free_heap":%d}`, protocol.TypeHeartbeat, strconv.Quote(s.devID), ts, heap)
	if s.write(b) == nil {
		s.d.f.heartbeats.Add(1)
	}
}

// pingTick pings; a pong missing for two intervals means a dead link.
func (s *session) pingTick() {
	o := s.d.f.opts
	ctx, cancel := context.WithTimeout(context.Background(), 2*o.PingInterval)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			s.d.f.recordError(s.d.key, errors.New("dead link: no pong"))
		}
		s.conn.CloseNow()
		return
	}
	s.ping.Reset(o.PingInterval)
}

func (s *session) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.conn.Write(ctx, websocket.MessageText, b)
	if err != nil && !s.isClosed() {
		s.d.f.recordError(s.d.key, fmt.Errorf("write: %w", err))
	}
	return err
}

func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// handle acks commands as the firmware does.
func (s *session) handle(data []byte) {
	var m struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Command string `json:"command"`
	}
	if json.Unmarshal(data, &m) != nil {
		return
	}
	switch m.Type {
	case protocol.TypeCommand, protocol.TypeConfig, protocol.TypeOTA:
	default:
		return
	}
	if m.ID == "" || len(m.ID) > 128 {
		return
	}
	result := "ok"
	if m.Command == "ping" {
		result = "pong"
	}
	b, _ := json.Marshal(map[string]any{"type": protocol.TypeAck, "id": m.ID, "ok": true, "result": result})
	if s.write(b) == nil {
		s.d.f.acks.Add(1)
	}
}

// welcomeID checks the server's first frame and returns the device id.
func welcomeID(typ websocket.MessageType, data []byte) (string, error) {
	var w struct {
		Type     string `json:"type"`
		Identity struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	if typ != websocket.MessageText || json.Unmarshal(data, &w) != nil || w.Type != protocol.TypeWelcome {
		return "", errors.New("first frame is not a welcome")
	}
	if id := w.Identity.ID; id == "" || len(id) > 128 || strings.ContainsAny(id, "\"\\ \t\r\n") {
		return "", errors.New("welcome without a valid identity id")
	}
	return w.Identity.ID, nil
}

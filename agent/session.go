package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/unhidra/unhidra/protocol"
)

// conn is one established connection. Its goroutines (the read loop,
// pings, commands, telemetry) are owned by session, which waits for all
// of them before returning.
type conn struct {
	a        *Agent
	ws       *websocket.Conn
	deviceID string
	welcome  *welcome

	ctx     context.Context // ends with the connection
	stop    <-chan struct{} // closed when the agent stops
	wg      sync.WaitGroup  // every goroutine of this connection
	sem     chan struct{}   // running commands
	qmu     sync.Mutex      // guards queue
	queue   []queuedCommand // commands waiting for a slot, oldest first
	ackTurn sync.Mutex      // held from a finished command's slot release to its ack (see run)
	hbSet   chan struct{}   // set-heartbeat changed the interval
	telDone chan struct{}   // a telemetry reading finished (buffered 1)
	failed  chan error      // first fatal error of a goroutine (buffered 1)

	lastRecv *atomic.Int64 // schedule-clock UnixNano of the last frame, ping or pong
	pinging  atomic.Bool   // a ping waits for its pong
}

// fail records the connection's first fatal error.
func (c *conn) fail(err error) {
	select {
	case c.failed <- err:
	default:
	}
}

var errDeadLink = errors.New("dead link: no frame or pong within the dead-link timeout")

// session runs one connection from dial to close.
func (a *Agent) session(ctx context.Context) sessionResult {
	clk := a.cfg.Clock
	var lastRecv atomic.Int64 // any frame, control frames included, proves the link
	ws, w, res := a.dial(ctx, func() { lastRecv.Store(clk.Now().UnixNano()) })
	if ws == nil {
		return res
	}
	start := clk.Now()
	res.connected = true
	devID := a.cfg.DeviceID
	if devID == "" {
		devID = w.Identity.ID
	}
	a.log.Info("connected", "device_id", devID, "session", a.red.clean(string(w.Session), 64))

	// The connection's context outlives ctx by the close handshake: the
	// read loop must still run to receive the server's close frame.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &conn{
		a: a, ws: ws, deviceID: devID, welcome: w, ctx: cctx, stop: ctx.Done(),
		sem:      make(chan struct{}, a.cfg.MaxConcurrentCommands),
		hbSet:    make(chan struct{}, 1),
		failed:   make(chan error, 1),
		telDone:  make(chan struct{}, 1),
		lastRecv: &lastRecv,
	}
	c.lastRecv.Store(start.UnixNano())
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.readLoop() }()

	err := c.loop()
	if ctx.Err() != nil {
		// Shutting down: say goodbye (Close bounds its own wait).
		ws.Close(websocket.StatusGoingAway, "agent stopping")
	} else {
		ws.CloseNow()
	}
	cancel()
	c.wg.Wait()
	res.err = err
	res.lasted = clk.Now().Sub(start)
	return res
}

// heartbeatInterval is the interval in force: set-heartbeat, then config,
// then the welcome's, then the default.
func (c *conn) heartbeatInterval() time.Duration {
	c.a.mu.Lock()
	d := c.a.hbEvery
	c.a.mu.Unlock()
	if d > 0 {
		return d
	}
	if c.a.cfg.HeartbeatInterval > 0 {
		return c.a.cfg.HeartbeatInterval
	}
	if s := seconds(c.welcome.HeartbeatInterval); s >= MinInterval.Seconds() && s <= MaxInterval.Seconds() {
		return time.Duration(s * float64(time.Second))
	}
	return DefaultHeartbeatInterval
}

// pingInterval is the ping interval in force: config, then the welcome's,
// then the default. The server sizes its idle timeout from what it told.
func (c *conn) pingInterval() time.Duration {
	if c.a.cfg.PingInterval > 0 {
		return c.a.cfg.PingInterval
	}
	if s := seconds(c.welcome.PingInterval); s >= MinInterval.Seconds() && s <= time.Hour.Seconds() {
		return time.Duration(s * float64(time.Second))
	}
	return DefaultPingInterval
}

// deadAfter is how long the link may stay silent: the configured bound when
// it exceeds the ping interval in force, else twice that interval.
func (c *conn) deadAfter(ping time.Duration) time.Duration {
	if d := c.a.cfg.DeadAfter; d > ping {
		return d
	}
	return 2 * ping
}

// loop is the connection's schedule: heartbeats, pings with dead-link
// detection, telemetry. It returns why the connection ended.
func (c *conn) loop() error {
	clk, cfg := c.a.cfg.Clock, c.a.cfg
	pingEvery := c.pingInterval()
	deadAfter := c.deadAfter(pingEvery)
	if err := c.sendHeartbeat(); err != nil {
		return err
	}
	hb := clk.NewTimer(c.heartbeatInterval())
	ping := clk.NewTimer(pingEvery)
	var tel Timer
	var telC <-chan time.Time
	if cfg.TelemetryInterval > 0 {
		tel = clk.NewTimer(cfg.TelemetryInterval)
		telC = tel.C()
	}
	defer func() {
		hb.Stop()
		ping.Stop()
		if tel != nil {
			tel.Stop()
		}
	}()
	for {
		select {
		case <-c.stop:
			return nil
		case err := <-c.failed:
			return err
		case <-hb.C():
			if err := c.sendHeartbeat(); err != nil {
				return err
			}
			hb = clk.NewTimer(c.heartbeatInterval())
		case <-c.hbSet:
			hb.Stop()
			hb = clk.NewTimer(c.heartbeatInterval())
		case <-ping.C():
			// The link is declared dead only once a ping went unanswered
			// and nothing else arrived for deadAfter: silence alone is
			// normal on a quiet link.
			silent := clk.Now().Sub(time.Unix(0, c.lastRecv.Load()))
			if !c.pinging.CompareAndSwap(false, true) {
				if silent >= deadAfter {
					return fmt.Errorf("%w (silent for %v)", errDeadLink, silent.Round(time.Millisecond))
				}
			} else {
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					// The pong itself updates lastRecv (OnPongReceived);
					// a lost pong keeps this waiting until the connection
					// ends, and the check above ends it.
					if c.ws.Ping(c.ctx) == nil {
						c.pinging.Store(false)
					}
				}()
			}
			ping = clk.NewTimer(pingEvery)
		case <-telC:
			// The next reading is scheduled when this one is done, so a
			// slow source never runs twice at once.
			telC = nil
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.sendTelemetry()
				c.telDone <- struct{}{}
			}()
		case <-c.telDone:
			tel = clk.NewTimer(cfg.TelemetryInterval)
			telC = tel.C()
		}
	}
}

// write sends one JSON frame within the write timeout.
func (c *conn) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.a.cfg.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (c *conn) sendHeartbeat() error {
	cfg := c.a.cfg
	uptime, err := SystemUptime()
	if cfg.Uptime != nil {
		uptime, err = cfg.Uptime()
	}
	if err != nil {
		c.a.log.Warn("uptime unavailable", "err", err)
	}
	free, err := SystemFreeMemory()
	if cfg.FreeMemory != nil {
		free, err = cfg.FreeMemory()
	}
	if err != nil {
		c.a.log.Warn("free memory unavailable", "err", err)
	}
	return c.write(heartbeat{Type: protocol.TypeHeartbeat, DeviceID: c.deviceID, TS: int64(uptime / time.Second), FreeHeap: free})
}

// readLoop reads server frames until the connection ends.
func (c *conn) readLoop() {
	clk := c.a.cfg.Clock
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			if c.ctx.Err() == nil {
				c.fail(c.a.closeError(fmt.Errorf("read: %w", err)))
			}
			return
		}
		c.lastRecv.Store(clk.Now().UnixNano())
		if typ != websocket.MessageText {
			c.a.log.Debug("ignoring a binary frame", "bytes", len(data))
			continue
		}
		var f inbound
		if err := json.Unmarshal(data, &f); err != nil {
			c.a.log.Warn("ignoring a malformed frame from the server", "bytes", len(data))
			continue
		}
		switch f.Type {
		case protocol.TypeCommand, protocol.TypeConfig, protocol.TypeOTA:
			c.dispatch(&f)
		case protocol.TypeError:
			c.a.log.Warn("server reported an error", "code", c.a.red.clean(f.Code, 32), "message", c.a.red.clean(f.Message, 200), "id", c.a.red.clean(f.ID, 64))
		default:
			c.a.log.Debug("ignoring frame", "type", c.a.red.clean(f.Type, 32))
		}
	}
}

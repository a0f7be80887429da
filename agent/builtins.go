package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// registerBuiltins installs the commands every agent answers.
func (a *Agent) registerBuiltins() {
	a.handlers["ping"] = func(context.Context, json.RawMessage) (any, error) { return "pong", nil }
	a.handlers["uptime"] = func(context.Context, json.RawMessage) (any, error) {
		d, err := a.uptime()
		if err != nil {
			return nil, err
		}
		return map[string]int64{"uptime_s": int64(d / time.Second)}, nil
	}
	a.handlers["meminfo"] = func(context.Context, json.RawMessage) (any, error) {
		free, err := a.freeMemory()
		if err != nil {
			return nil, err
		}
		return map[string]uint64{"free_heap": free}, nil
	}
	a.handlers["set-heartbeat"] = a.setHeartbeat
	a.handlers["reboot"] = func(context.Context, json.RawMessage) (any, error) {
		if !a.cfg.AllowReboot || a.cfg.Reboot == nil {
			return nil, errors.New("reboot is not enabled on this device")
		}
		return "rebooting", nil // the reboot itself follows the ack (conn.run)
	}
}

func (a *Agent) uptime() (time.Duration, error) {
	if a.cfg.Uptime != nil {
		return a.cfg.Uptime()
	}
	return SystemUptime()
}

func (a *Agent) freeMemory() (uint64, error) {
	if a.cfg.FreeMemory != nil {
		return a.cfg.FreeMemory()
	}
	return SystemFreeMemory()
}

// setHeartbeat handles {"interval": seconds}: it changes the heartbeat
// interval of this and later connections (until the agent restarts).
func (a *Agent) setHeartbeat(ctx context.Context, params json.RawMessage) (any, error) {
	var p struct {
		Interval *float64 `json:"interval"`
	}
	if err := json.Unmarshal(params, &p); err != nil || p.Interval == nil {
		return nil, errors.New(`params must be {"interval": seconds}`)
	}
	s := *p.Interval
	if math.IsNaN(s) || s < MinInterval.Seconds() || s > MaxInterval.Seconds() {
		return nil, fmt.Errorf("interval must be between %v and %v seconds", MinInterval.Seconds(), MaxInterval.Seconds())
	}
	d := time.Duration(s * float64(time.Second))
	a.mu.Lock()
	a.hbEvery = d
	a.mu.Unlock()
	if c := connFromContext(ctx); c != nil {
		select {
		case c.hbSet <- struct{}{}:
		default:
		}
	}
	return map[string]float64{"interval": d.Seconds()}, nil
}

type connKey struct{}

// connFromContext returns the connection a command runs on.
func connFromContext(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

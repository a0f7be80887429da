package gateway_test

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// TestSlowConsumer_StoppedReaderClosedWithinBound: at 400 messages/s to a
// topic, a reader that stops reading (with ordinary, auto-tuned socket
// buffers on its side and the server's default send buffer and stall
// timeout) is closed as a slow consumer within 5 s, with 4001 when the
// socket still takes the close frame. The other readers' p99 latency stays
// within twice that of runs without a slow reader (medians of alternated
// runs, so that a loaded machine does not decide the outcome).
func TestSlowConsumer_StoppedReaderClosedWithinBound(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about half a minute")
	}
	const (
		rate    = 400
		readers = 10
		bound   = 5 * time.Second
	)
	s := newStack(t, gateway.Config{Transport: ws.Config{PingInterval: 10 * time.Minute, IdleTimeout: 20 * time.Minute},
		Admission: gateway.AdmissionLimits{MaxConnsPerIdent: 200, ConnRatePerIdent: ratelimit.Limit{Burst: 200, Every: time.Millisecond}}})
	token, _ := s.newUser(t)
	subscribe := func(c *websocket.Conn, topic string) {
		writeJSON(t, c, map[string]string{"type": "test.subscribe", "id": "s", "channel": topic})
		for {
			f, err := readFrame(t, c, 5*time.Second)
			if err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			if f["type"] == "ack" {
				return
			}
		}
	}

	// run publishes for d to topic and returns the fast readers' p99
	// latency; with slow, one more reader stops reading after a second,
	// and run also returns how long the server took to close it and the
	// close code it saw.
	run := func(topic string, d time.Duration, slow bool) (p99, closedAfter time.Duration, code websocket.StatusCode) {
		fast := make([]*websocket.Conn, readers)
		for i := range fast {
			fast[i] = s.mustDial(t, token).conn
			subscribe(fast[i], topic)
		}
		var slowConn *websocket.Conn
		if slow {
			slowConn = s.mustDial(t, token).conn
			subscribe(slowConn, topic)
		}
		var mu sync.Mutex
		var lat []time.Duration
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, c := range fast {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					_, data, err := c.Read(ctx)
					if err != nil {
						return
					}
					if i := strings.IndexByte(string(data), '|'); i > 0 && len(data) >= i+9 {
						sent := int64(binary.BigEndian.Uint64(data[i+1 : i+9]))
						mu.Lock()
						lat = append(lat, time.Duration(time.Now().UnixNano()-sent))
						mu.Unlock()
					}
				}
			}()
		}
		stopReading := make(chan time.Time, 1)
		if slow {
			wg.Add(1)
			go func() { // reads for about a second, then stops
				defer wg.Done()
				// No deadline on the read: coder/websocket closes the
				// connection when a read's context ends.
				for range rate {
					if _, _, err := slowConn.Read(ctx); err != nil {
						return
					}
				}
				stopReading <- time.Now()
			}()
		}
		// The watcher polls the close counter (in every run, so that its
		// cost is the same in both kinds) and notes when it moved after
		// the slow reader stopped.
		before := metricValue(t, s, "unhidra_gateway_closes_total", "slow_consumer")
		var stopped, closedAt time.Time
		var watchMu sync.Mutex
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			for ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
				moved := metricValue(t, s, "unhidra_gateway_closes_total", "slow_consumer") > before
				watchMu.Lock()
				select {
				case stopped = <-stopReading:
				default:
				}
				if moved && !stopped.IsZero() && closedAt.IsZero() {
					closedAt = time.Now()
				}
				watchMu.Unlock()
			}
		}()
		pad := strings.Repeat("x", 180) // a chat message's size
		tick := time.NewTicker(time.Second / rate)
		end := time.Now().Add(d)
		for now := range tick.C {
			if now.After(end) {
				break
			}
			frame := make([]byte, 0, 256)
			frame = append(frame, `{"type":"message","body":"`+pad+`|`...)
			frame = binary.BigEndian.AppendUint64(frame, uint64(time.Now().UnixNano()))
			frame = append(frame, `"}`...)
			s.gw.Hub().Publish(topic, ws.NewPreparedMessage(false, frame))
		}
		tick.Stop()
		if slow {
			for i := 0; i < 500; i++ {
				watchMu.Lock()
				done := !closedAt.IsZero() || (!stopped.IsZero() && time.Since(stopped) > 2*bound)
				watchMu.Unlock()
				if done {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			watchMu.Lock()
			if closedAt.IsZero() {
				closedAfter = -1
			} else {
				closedAfter = closedAt.Sub(stopped)
			}
			watchMu.Unlock()
			// Now read what the slow reader was sent: the close frame, if
			// the socket took it, after the data.
			code = -1
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			for {
				_, _, err := slowConn.Read(rctx)
				if err != nil {
					var ce websocket.CloseError
					if errors.As(err, &ce) {
						code = ce.Code
					} else {
						t.Logf("the slow reader's connection ended without a close frame: %v", err)
					}
					break
				}
			}
			rcancel()
		}
		cancel()
		<-watchDone
		for _, c := range fast {
			c.CloseNow()
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(lat)
		if len(lat) < rate*int(d/time.Second)*readers/2 {
			t.Fatalf("only %d latencies measured", len(lat))
		}
		return lat[len(lat)*99/100], closedAfter, code
	}

	var base, withSlow []time.Duration
	for i := range 3 {
		p, _, _ := run("quiet"+string(rune('a'+i)), 6*time.Second, false)
		base = append(base, p)
		p, after, code := run("slow"+string(rune('a'+i)), 6*time.Second, true)
		withSlow = append(withSlow, p)
		t.Logf("run %d: p99 %v without a slow reader, %v with one; the slow reader was closed %v after it stopped reading (close code %d)",
			i, base[i], p, after, code)
		if after < 0 || after > bound {
			t.Errorf("run %d: slow reader closed after %v, bound %v", i, after, bound)
		}
		if code != protocol.CloseSlowConsumer && code != -1 {
			t.Errorf("run %d: slow reader got close code %d, want %d (or a closed socket)", i, code, protocol.CloseSlowConsumer)
		}
	}
	slices.Sort(base)
	slices.Sort(withSlow)
	mb, ms := max(base[1], time.Millisecond), withSlow[1]
	t.Logf("median p99: %v without, %v with a slow reader", base[1], ms)
	if raceEnabled {
		t.Log("race detector on: latencies are the detector's, not the server's; the 2x comparison is made without it")
	} else if ms > 2*mb {
		t.Errorf("a slow reader raised the others' median p99 from %v to %v (more than 2x)", base[1], ms)
	}
}

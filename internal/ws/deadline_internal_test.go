package ws

import (
	"net"
	"testing"
	"time"
)

type deadlineConn struct {
	net.Conn
	sets []time.Time
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.sets = append(d.sets, t)
	return nil
}

// TestArmWriteDeadline: the deadline is re-armed once a quarter of the
// timeout has passed, never later, so a write always has at least 3/4 of
// WriteTimeout and at most all of it.
func TestArmWriteDeadline(t *testing.T) {
	dc := &deadlineConn{}
	c := &Conn{engine: &Engine{cfg: Config{WriteTimeout: 8 * time.Second}}, conn: dc}
	t0 := time.Unix(1_000_000, 0)
	for _, step := range []struct {
		at   time.Duration
		sets int
	}{{0, 1}, {time.Second, 1}, {2 * time.Second, 1}, {2*time.Second + time.Millisecond, 2}, {3 * time.Second, 2}, {5 * time.Second, 3}} {
		now := t0.Add(step.at)
		if err := c.armWriteDeadline(now); err != nil {
			t.Fatal(err)
		}
		if len(dc.sets) != step.sets {
			t.Fatalf("at %v: %d deadlines set, want %d", step.at, len(dc.sets), step.sets)
		}
		left := dc.sets[len(dc.sets)-1].Sub(now)
		if left < 6*time.Second || left > 8*time.Second {
			t.Fatalf("at %v: %v left before the deadline, want 6-8 s", step.at, left)
		}
	}
}

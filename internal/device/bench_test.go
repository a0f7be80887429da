package device

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store/postgres"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/internal/testenv"
)

// BenchmarkHeartbeatIngest measures heartbeats per second through the
// service with its batched writes to SQLite (synchronous=FULL) and PostgreSQL: each
// simulated second, every one of the devices beats once, then one flush.
// Reported: heartbeats/s including the flush, and the flush's share.
func BenchmarkHeartbeatIngest(b *testing.B) {
	open := map[string]func(b *testing.B) (*sqldb.DB, error){
		"sqlite": func(b *testing.B) (*sqldb.DB, error) {
			return sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"))
		},
		"postgres": func(b *testing.B) (*sqldb.DB, error) {
			return postgres.Open(context.Background(), testenv.PostgresDSN(b))
		},
	}
	for _, c := range []struct {
		store   string
		devices int
	}{{"sqlite", 1000}, {"sqlite", 10000}, {"postgres", 1000}, {"postgres", 10000}} {
		b.Run(fmt.Sprintf("store=%s/devices=%d", c.store, c.devices), func(b *testing.B) {
			ctx := context.Background()
			devices := c.devices
			db, err := open[c.store](b)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			clk := &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
			owner := &unhidra.User{Name: "owner", Role: unhidra.RoleMember, PasswordHash: "x"}
			if err := db.CreateUser(ctx, owner); err != nil {
				b.Fatal(err)
			}
			svc := NewService(db, Config{Now: clk.Now, MaxPerOwner: devices}, nil)
			ids := make([]string, devices)
			for i := range ids {
				d, _, err := svc.Registry().Register(ctx, owner, Registration{Name: fmt.Sprint("d", i), Type: "esp32"})
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = d.ID
				svc.connected(ctx, &fakeConn{}, d.ID, owner.ID, d.Name, "")
			}
			if err := svc.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var flushTime time.Duration
			beats := 0
			for i := 0; i < b.N; i++ {
				clk.Add(time.Second)
				for j, id := range ids {
					svc.heartbeat(id, Heartbeat{Uptime: float64(i + 1), FreeHeap: int64(100000 + j)})
				}
				beats += len(ids)
				start := time.Now()
				if err := svc.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				flushTime += time.Since(start)
			}
			b.ReportMetric(float64(beats)/b.Elapsed().Seconds(), "heartbeats/s")
			b.ReportMetric(100*flushTime.Seconds()/b.Elapsed().Seconds(), "%flush")
		})
	}
}

package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
)

func mustCreateDevice(t *testing.T, db *sqldb.DB, owner *store.User, keyID string) *store.Device {
	t.Helper()
	d := &store.Device{ID: store.NewID(store.PrefixDevice), OwnerID: owner.ID, Name: "sensor " + keyID, Type: "esp32",
		Capabilities: json.RawMessage(`{"relay":true}`), KeyID: keyID, KeyHash: "hash-" + keyID}
	if err := db.CreateDevice(context.Background(), d); err != nil {
		t.Fatalf("CreateDevice: %v", err)
	}
	return d
}

func testDevices(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("CreateFindList", func(t *testing.T) {
		db := open(t)
		clk := newClock(db)
		alice, bob := mustCreateUser(t, db, "alice"), mustCreateUser(t, db, "bob")
		d := mustCreateDevice(t, db, alice, "k1")
		mustCreateDevice(t, db, bob, "k2")
		got, err := db.DeviceByKeyID(ctx, "k1")
		if err != nil || got.ID != d.ID || got.KeyHash != "hash-k1" || string(got.Capabilities) != `{"relay":true}` ||
			!got.CreatedAt.Equal(clk.now()) || got.Revoked() {
			t.Fatalf("DeviceByKeyID = %+v, %v", got, err)
		}
		list, err := db.Devices(ctx, store.DeviceFilter{OwnerID: alice.ID})
		if err != nil || len(list) != 1 || list[0].ID != d.ID {
			t.Fatalf("Devices(alice) = %v, %v", list, err)
		}
		if all, _ := db.Devices(ctx, store.DeviceFilter{}); len(all) != 2 {
			t.Fatalf("Devices() = %d devices, want 2", len(all))
		}
		if n, err := db.CountDevices(ctx, alice.ID); err != nil || n != 1 {
			t.Fatalf("CountDevices = %d, %v", n, err)
		}
		_, err = db.DeviceByID(ctx, "dev_nope")
		wantCode(t, err, store.ENOTFOUND)
		dup := &store.Device{ID: store.NewID(store.PrefixDevice), OwnerID: alice.ID, Name: "x", Type: "t", KeyID: "k1", KeyHash: "h"}
		wantCode(t, db.CreateDevice(ctx, dup), store.ECONFLICT)
	})
	t.Run("ReplaceKeyAndRevoke", func(t *testing.T) {
		db := open(t)
		clk := newClock(db)
		alice := mustCreateUser(t, db, "alice")
		d := mustCreateDevice(t, db, alice, "k1")
		before := clk.now()
		clk.add(time.Minute)
		got, err := db.ReplaceDeviceKey(ctx, d.ID, "k9", "hash-k9")
		if err != nil || got.KeyID != "k9" || !got.KeyCreatedAt.Equal(clk.now()) {
			t.Fatalf("ReplaceDeviceKey = %+v, %v", got, err)
		}
		_, err = db.DeviceByKeyID(ctx, "k1")
		wantCode(t, err, store.ENOTFOUND)
		changed, _ := db.Devices(ctx, store.DeviceFilter{ChangedSince: before.Add(time.Second)})
		if len(changed) != 1 {
			t.Fatalf("ChangedSince after rotation: %d devices", len(changed))
		}
		got, err = db.RevokeDevice(ctx, d.ID)
		if err != nil || !got.Revoked() {
			t.Fatalf("RevokeDevice = %+v, %v", got, err)
		}
		_, err = db.RevokeDevice(ctx, d.ID)
		wantCode(t, err, store.ENOTFOUND)
		_, err = db.ReplaceDeviceKey(ctx, d.ID, "k10", "h")
		wantCode(t, err, store.ENOTFOUND)
		if n, _ := db.CountDevices(ctx, alice.ID); n != 0 {
			t.Fatalf("revoked device counted: %d", n)
		}
	})
	t.Run("BatchHealthHeapTelemetryEvents", func(t *testing.T) {
		db := open(t)
		clk := newClock(db)
		alice := mustCreateUser(t, db, "alice")
		d := mustCreateDevice(t, db, alice, "k1")
		minute := clk.now().Truncate(time.Minute)
		b := &store.DeviceBatch{
			Health: []store.DeviceHealth{{DeviceID: d.ID, LastSeen: clk.now(), ConnectedSince: clk.now(), Reboots: 2, FreeHeap: 1000, Uptime: 12.5}},
			Heap:   []store.HeapBucket{{DeviceID: d.ID, Res: store.HeapMinute, Start: minute, Min: 900, Max: 1100, Sum: 2000, Count: 2}},
			Events: []store.AuditEvent{{Action: store.AuditDeviceConnected, Target: d.ID}},
		}
		for i := range 5 {
			b.Telemetry = append(b.Telemetry, store.Telemetry{DeviceID: d.ID, At: clk.now(), Readings: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		}
		b.KeepTelemetry = 3
		if err := db.WriteDeviceBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		// A second batch merges into the same bucket.
		if err := db.WriteDeviceBatch(ctx, &store.DeviceBatch{Heap: []store.HeapBucket{
			{DeviceID: d.ID, Res: store.HeapMinute, Start: minute, Min: 800, Max: 1000, Sum: 800, Count: 1}}}); err != nil {
			t.Fatal(err)
		}
		got, _ := db.DeviceByID(ctx, d.ID)
		if got.Reboots != 2 || got.FreeHeap != 1000 || got.Uptime != 12.5 || !got.LastSeen.Equal(clk.now()) || !got.ConnectedSince.Equal(clk.now()) {
			t.Fatalf("health not written: %+v", got)
		}
		series, err := db.HeapSeries(ctx, d.ID, store.HeapMinute, time.Time{}, 0)
		if err != nil || len(series) != 1 {
			t.Fatalf("HeapSeries = %v, %v", series, err)
		}
		if s := series[0]; s.Min != 800 || s.Max != 1100 || s.Sum != 2800 || s.Count != 3 || !s.Start.Equal(minute) {
			t.Fatalf("merged bucket = %+v", s)
		}
		tel, err := db.RecentTelemetry(ctx, d.ID, 0)
		if err != nil || len(tel) != 3 || string(tel[0].Readings) != `{"n":4}` || string(tel[2].Readings) != `{"n":2}` {
			t.Fatalf("RecentTelemetry (bounded to 3, newest first) = %v, %v", tel, err)
		}
		ev, _ := db.AuditEvents(ctx, store.AuditFilter{Target: d.ID})
		if len(ev) != 1 || ev[0].Action != store.AuditDeviceConnected {
			t.Fatalf("device events = %v", ev)
		}
		if n, err := db.DeleteHeapBefore(ctx, store.HeapMinute, minute.Add(time.Minute)); err != nil || n != 1 {
			t.Fatalf("DeleteHeapBefore = %d, %v", n, err)
		}
	})
	t.Run("Commands", func(t *testing.T) {
		db := open(t)
		clk := newClock(db)
		alice := mustCreateUser(t, db, "alice")
		d := mustCreateDevice(t, db, alice, "k1")
		mk := func(ttl time.Duration) *store.Command {
			c := &store.Command{ID: store.NewID(store.PrefixCommand), DeviceID: d.ID, Type: "command", Command: "reboot",
				Params: json.RawMessage(`{"delay":1}`), Status: store.CommandQueued, CreatedBy: alice.ID, ExpiresAt: clk.now().Add(ttl)}
			if err := db.CreateCommand(ctx, c); err != nil {
				t.Fatal(err)
			}
			clk.add(time.Millisecond)
			return c
		}
		c1, c2 := mk(time.Hour), mk(time.Minute)
		q, err := db.Commands(ctx, d.ID, store.CommandQueued, 0)
		if err != nil || len(q) != 2 || q[0].ID != c2.ID || string(q[1].Params) != `{"delay":1}` {
			t.Fatalf("Commands(queued) = %v, %v", q, err)
		}
		got, err := db.UpdateCommand(ctx, d.ID, c1.ID, store.CommandUpdate{From: []string{store.CommandQueued}, Status: store.CommandDelivered})
		if err != nil || got.Status != store.CommandDelivered || got.DeliveredAt.IsZero() {
			t.Fatalf("deliver = %+v, %v", got, err)
		}
		_, err = db.UpdateCommand(ctx, d.ID, c1.ID, store.CommandUpdate{From: []string{store.CommandQueued}, Status: store.CommandDelivered})
		wantCode(t, err, store.ECONFLICT)
		_, err = db.UpdateCommand(ctx, "dev_other", c1.ID, store.CommandUpdate{From: []string{store.CommandDelivered}, Status: store.CommandAcked})
		wantCode(t, err, store.ENOTFOUND)
		got, err = db.UpdateCommand(ctx, d.ID, c1.ID, store.CommandUpdate{From: []string{store.CommandDelivered}, Status: store.CommandAcked,
			Result: json.RawMessage(`{"ok":1}`)})
		if err != nil || got.Status != store.CommandAcked || string(got.Result) != `{"ok":1}` {
			t.Fatalf("ack = %+v, %v", got, err)
		}
		clk.add(2 * time.Minute)
		exp, err := db.ExpireCommands(ctx, clk.now())
		if err != nil || len(exp) != 1 || exp[0].ID != c2.ID || exp[0].Status != store.CommandExpired {
			t.Fatalf("ExpireCommands = %v, %v", exp, err)
		}
		got, _ = db.CommandByID(ctx, d.ID, c2.ID)
		if got.Status != store.CommandExpired {
			t.Fatalf("expired command reads %q", got.Status)
		}
		if again, _ := db.ExpireCommands(ctx, clk.now()); len(again) != 0 {
			t.Fatalf("expired twice: %v", again)
		}
	})
}

package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/protocol"
)

func mustCreateDevice(t *testing.T, db *sqldb.DB, owner *unhidra.User, keyID string) *unhidra.Device {
	t.Helper()
	d := &unhidra.Device{ID: unhidra.NewID(unhidra.PrefixDevice), OwnerID: owner.ID, Name: "sensor " + keyID, Type: "esp32",
		Capabilities: json.RawMessage(`{"relay":true}`), KeyID: keyID, KeyHash: "hash-" + keyID}
	if err := db.CreateDevice(context.Background(), d); err != nil {
		t.Fatalf("CreateDevice: %v", err)
	}
	return d
}

func testDevices(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("Followers", func(t *testing.T) {
		db := open(t)
		newClock(db)
		alice := mustCreateUser(t, db, "alice")
		d := mustCreateDevice(t, db, alice, "kf")
		general := unhidra.GeneralChannelID
		if err := db.FollowDevice(ctx, d.ID, general, alice.ID); err != nil {
			t.Fatal(err)
		}
		if err := db.FollowDevice(ctx, d.ID, general, alice.ID); err != nil {
			t.Fatalf("following twice: %v", err)
		}
		got, err := db.DeviceFollowers(ctx, d.ID)
		if err != nil || len(got) != 1 || got[0] != general {
			t.Fatalf("followers = %v, %v", got, err)
		}
		wantCode(t, db.FollowDevice(ctx, d.ID, "chn_nope", alice.ID), protocol.ErrNotFound)
		wantCode(t, db.FollowDevice(ctx, "dev_nope", general, alice.ID), protocol.ErrNotFound)
		if err := db.UnfollowDevice(ctx, d.ID, general); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.UnfollowDevice(ctx, d.ID, general), protocol.ErrNotFound)
		if got, _ := db.DeviceFollowers(ctx, d.ID); len(got) != 0 {
			t.Fatalf("followers after unfollow = %v", got)
		}
	})
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
		all, _ := db.Devices(ctx, store.DeviceFilter{})
		if len(all) != 2 {
			t.Fatalf("Devices() = %d devices, want 2", len(all))
		}
		// Pages: the limit is written into the query in steps, and the rows
		// past it are not returned.
		if first, _ := db.Devices(ctx, store.DeviceFilter{Limit: 1}); len(first) != 1 || first[0].ID != all[0].ID {
			t.Fatalf("Devices(limit 1) = %v, want %s", first, all[0].ID)
		}
		if next, _ := db.Devices(ctx, store.DeviceFilter{Limit: 1, After: all[0].ID}); len(next) != 1 || next[0].ID != all[1].ID {
			t.Fatalf("Devices(limit 1, after the first) = %v, want %s", next, all[1].ID)
		}
		if n, err := db.CountDevices(ctx, alice.ID); err != nil || n != 1 {
			t.Fatalf("CountDevices = %d, %v", n, err)
		}
		_, err = db.DeviceByID(ctx, "dev_nope")
		wantCode(t, err, protocol.ErrNotFound)
		dup := &unhidra.Device{ID: unhidra.NewID(unhidra.PrefixDevice), OwnerID: alice.ID, Name: "x", Type: "t", KeyID: "k1", KeyHash: "h"}
		wantCode(t, db.CreateDevice(ctx, dup), protocol.ErrConflict)
	})
	t.Run("ReplaceKeyAndRevoke", func(t *testing.T) {
		db, clk, alice, d := aliceDevice(t, open)
		before := clk.now()
		clk.add(time.Minute)
		got, err := db.ReplaceDeviceKey(ctx, d.ID, "k9", "hash-k9")
		if err != nil || got.KeyID != "k9" || !got.KeyCreatedAt.Equal(clk.now()) {
			t.Fatalf("ReplaceDeviceKey = %+v, %v", got, err)
		}
		_, err = db.DeviceByKeyID(ctx, "k1")
		wantCode(t, err, protocol.ErrNotFound)
		changed, _ := db.Devices(ctx, store.DeviceFilter{ChangedSince: before.Add(time.Second)})
		if len(changed) != 1 {
			t.Fatalf("ChangedSince after rotation: %d devices", len(changed))
		}
		got, err = db.RevokeDevice(ctx, d.ID)
		if err != nil || !got.Revoked() {
			t.Fatalf("RevokeDevice = %+v, %v", got, err)
		}
		_, err = db.RevokeDevice(ctx, d.ID)
		wantCode(t, err, protocol.ErrNotFound)
		_, err = db.ReplaceDeviceKey(ctx, d.ID, "k10", "h")
		wantCode(t, err, protocol.ErrNotFound)
		if n, _ := db.CountDevices(ctx, alice.ID); n != 0 {
			t.Fatalf("revoked device counted: %d", n)
		}
	})
	t.Run("BatchHealthHeapTelemetryEvents", func(t *testing.T) {
		db, clk, _, d := aliceDevice(t, open)
		minute := clk.now().Truncate(time.Minute)
		b := &store.DeviceBatch{
			Health: []store.DeviceHealth{{DeviceID: d.ID, LastSeen: clk.now(), ConnectedSince: clk.now(), Reboots: 2, FreeHeap: 1000, Uptime: 12.5}},
			Heap:   []store.HeapBucket{{DeviceID: d.ID, Res: store.HeapMinute, Start: minute, Min: 900, Max: 1100, Sum: 2000, Count: 2}},
			Events: []unhidra.AuditEvent{{Action: unhidra.AuditDeviceConnected, Target: d.ID}},
		}
		for i := range 5 {
			b.Telemetry = append(b.Telemetry, unhidra.Telemetry{DeviceID: d.ID, At: clk.now(), Readings: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
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
		if len(ev) != 1 || ev[0].Action != unhidra.AuditDeviceConnected {
			t.Fatalf("device events = %v", ev)
		}
		if n, err := db.DeleteHeapBefore(ctx, store.HeapMinute, minute.Add(time.Minute)); err != nil || n != 1 {
			t.Fatalf("DeleteHeapBefore = %d, %v", n, err)
		}
	})
	t.Run("OlderHealthDoesNotOverwriteNewer", func(t *testing.T) {
		// A device moves from node A to node B: B flushes "connected" first,
		// A's "disconnected" (seen earlier) arrives after it.
		db, clk, _, d := aliceDevice(t, open)
		left := clk.now()
		clk.add(time.Second)
		joined := clk.now()
		write := func(h store.DeviceHealth) {
			t.Helper()
			h.DeviceID = d.ID
			if err := db.WriteDeviceBatch(ctx, &store.DeviceBatch{Health: []store.DeviceHealth{h}}); err != nil {
				t.Fatal(err)
			}
		}
		write(store.DeviceHealth{LastSeen: joined, ConnectedSince: joined, Reboots: 1, FreeHeap: 2000})
		write(store.DeviceHealth{LastSeen: left, Reboots: 0, FreeHeap: 1000})
		got, _ := db.DeviceByID(ctx, d.ID)
		if !got.LastSeen.Equal(joined) || !got.ConnectedSince.Equal(joined) || got.Reboots != 1 || got.FreeHeap != 2000 {
			t.Fatalf("older health overwrote newer: %+v", got)
		}
		// The node it left noticed the dead connection only now, after the
		// move: its record is newer but from the older connection.
		clk.add(time.Second)
		write(store.DeviceHealth{LastSeen: clk.now(), Connection: left.Add(-time.Hour), Reboots: 0, FreeHeap: 900})
		got, _ = db.DeviceByID(ctx, d.ID)
		if !got.ConnectedSince.Equal(joined) || got.FreeHeap != 2000 {
			t.Fatalf("the end of an older connection overwrote a newer one: %+v", got)
		}
		// A newer one (or one of the same instant) still wins.
		write(store.DeviceHealth{LastSeen: joined, ConnectedSince: joined, Reboots: 1, FreeHeap: 1500})
		clk.add(time.Second)
		write(store.DeviceHealth{LastSeen: clk.now(), Reboots: 1, FreeHeap: 1400})
		got, _ = db.DeviceByID(ctx, d.ID)
		if !got.LastSeen.Equal(clk.now()) || !got.ConnectedSince.IsZero() || got.FreeHeap != 1400 {
			t.Fatalf("newer health not written: %+v", got)
		}
	})
	t.Run("Commands", func(t *testing.T) {
		db, clk, alice, d := aliceDevice(t, open)
		mk := func(ttl time.Duration) *unhidra.Command {
			c := &unhidra.Command{ID: unhidra.NewID(unhidra.PrefixCommand), DeviceID: d.ID, Type: protocol.TypeCommand, Command: "reboot",
				Params: json.RawMessage(`{"delay":1}`), Status: unhidra.CommandQueued, CreatedBy: alice.ID, ExpiresAt: clk.now().Add(ttl)}
			if err := db.CreateCommand(ctx, c); err != nil {
				t.Fatal(err)
			}
			clk.add(time.Millisecond)
			return c
		}
		c1, c2 := mk(time.Hour), mk(time.Minute)
		q, err := db.Commands(ctx, d.ID, unhidra.CommandQueued, 0)
		if err != nil || len(q) != 2 || q[0].ID != c2.ID || string(q[1].Params) != `{"delay":1}` {
			t.Fatalf("Commands(queued) = %v, %v", q, err)
		}
		got, err := db.UpdateCommand(ctx, d.ID, c1.ID, store.CommandUpdate{From: []string{unhidra.CommandQueued}, Status: unhidra.CommandDelivered})
		if err != nil || got.Status != unhidra.CommandDelivered || got.DeliveredAt.IsZero() {
			t.Fatalf("deliver = %+v, %v", got, err)
		}
		_, err = db.UpdateCommand(ctx, d.ID, c1.ID, store.CommandUpdate{From: []string{unhidra.CommandQueued}, Status: unhidra.CommandDelivered})
		wantCode(t, err, protocol.ErrConflict)
		_, err = db.UpdateCommand(ctx, "dev_other", c1.ID, store.CommandUpdate{From: []string{unhidra.CommandDelivered}, Status: unhidra.CommandAcked})
		wantCode(t, err, protocol.ErrNotFound)
		got, err = db.UpdateCommand(ctx, d.ID, c1.ID, store.CommandUpdate{From: []string{unhidra.CommandDelivered}, Status: unhidra.CommandAcked,
			Result: json.RawMessage(`{"ok":1}`)})
		if err != nil || got.Status != unhidra.CommandAcked || string(got.Result) != `{"ok":1}` {
			t.Fatalf("ack = %+v, %v", got, err)
		}
		clk.add(2 * time.Minute)
		exp, err := db.ExpireCommands(ctx, clk.now())
		if err != nil || len(exp) != 1 || exp[0].ID != c2.ID || exp[0].Status != unhidra.CommandExpired {
			t.Fatalf("ExpireCommands = %v, %v", exp, err)
		}
		got, _ = db.CommandByID(ctx, d.ID, c2.ID)
		if got.Status != unhidra.CommandExpired {
			t.Fatalf("expired command reads %q", got.Status)
		}
		if again, _ := db.ExpireCommands(ctx, clk.now()); len(again) != 0 {
			t.Fatalf("expired twice: %v", again)
		}
	})
}

// aliceDevice opens a store with a test clock, an account alice and her
// device with key ID k1.
func aliceDevice(t *testing.T, open Opener) (*sqldb.DB, *clock, *unhidra.User, *unhidra.Device) {
	t.Helper()
	db := open(t)
	clk := newClock(db)
	alice := mustCreateUser(t, db, "alice")
	return db, clk, alice, mustCreateDevice(t, db, alice, "k1")
}

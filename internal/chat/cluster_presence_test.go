package chat

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestClusterPresence_RemoteNodesExpireAndLeave(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := &testClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	s := New(db, hub.NewRouter(hub.New(), &local.Bus{}, nil), Config{Now: clk.now, PresenceRefresh: time.Hour}, nil)
	defer s.Close()
	note := func(n presenceNote) {
		data, _ := json.Marshal(n)
		s.onPresenceNote(data)
	}
	// "~" sorts after any hex node ID, so this node leads.
	note(presenceNote{Node: "~other", Identity: "usr_x", Status: StatusOnline})
	note(presenceNote{Node: "~other", Identity: "usr_y", Status: StatusAway})
	if got := s.Presence("usr_x").Status; got != StatusOnline {
		t.Fatalf("x held by another node: %s", got)
	}
	if got := s.Presence("usr_y").Status; got != StatusAway {
		t.Fatalf("y away on another node: %s", got)
	}
	note(presenceNote{Node: "~other", Identity: "usr_y"})
	if got := s.Presence("usr_y").Status; got != StatusOffline {
		t.Fatalf("y gone from the other node: %s", got)
	}
	// The other node goes quiet: after three refresh periods its word expires.
	clk.add(2 * time.Hour)
	s.refreshPresence()
	if got := s.Presence("usr_x").Status; got != StatusOnline {
		t.Fatalf("x expired too early: %s", got)
	}
	clk.add(2 * time.Hour)
	s.refreshPresence()
	if got := s.Presence("usr_x").Status; got != StatusOffline {
		t.Fatalf("x still online after its node went silent: %s", got)
	}
	// A node that says goodbye takes its identities with it at once.
	note(presenceNote{Node: "~third", Roster: map[string]string{"usr_z": StatusOnline}})
	if s.Presence("usr_z").Status != StatusOnline {
		t.Fatal("roster not applied")
	}
	note(presenceNote{Node: "~third", Final: true})
	if got := s.Presence("usr_z").Status; got != StatusOffline {
		t.Fatalf("z after its node left: %s", got)
	}
	// Notes claiming to be from this node are ignored.
	note(presenceNote{Node: s.presence.node, Identity: "usr_w", Status: StatusOnline})
	if s.Presence("usr_w").Status != StatusOffline {
		t.Fatal("own note applied")
	}
}

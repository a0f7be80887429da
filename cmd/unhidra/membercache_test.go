package main

import (
	"testing"
	"time"

	"github.com/unhidra/unhidra/protocol"
)

// A new account joins the default channel in the store, not through a chat
// membership change: chat's member cache on a running server must still show
// it in the presence snapshot of the next connection of someone whose
// co-members it cached before — made through the API, and by `unhidra admin`
// in another process (found by the identity-event watcher).
func TestMemberCache_NewAccountsReachSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"})
	snapshotHas := func(token, id string) bool {
		c := dialAs(t, s, protocol.Subprotocol, "bearer."+token)
		users, _ := readType(t, c, protocol.TypePresenceSnapshot)["users"].([]any)
		for _, u := range users {
			if u.(map[string]any)["user"] == id {
				return true
			}
		}
		return false
	}
	_, ann := register(t, s, "annika")
	// Online; after its snapshot, annika's co-members are cached.
	readType(t, dialAs(t, s, protocol.Subprotocol, "bearer."+ann), protocol.TypePresenceSnapshot)

	beaID, bea := register(t, s, "beatrix")
	readType(t, dialAs(t, s, protocol.Subprotocol, "bearer."+bea), protocol.TypePresenceSnapshot) // online
	if !snapshotHas(ann, beaID) {
		t.Fatal("an account registered after annika's co-members were cached is missing from her next snapshot")
	}

	if _, stderr, err := runCLI(t, nil, "correct horse battery\n", "admin", "--data-dir", dir, "user", "create", "cyrus", "--password-stdin"); err != nil {
		t.Fatalf("admin user create: %v\n%s", err, stderr)
	}
	st, body := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "cyrus", "password": "correct horse battery"})
	if st != 200 {
		t.Fatalf("login cyrus: %d %v", st, body)
	}
	cyID := body["user"].(map[string]any)["id"].(string)
	readType(t, dialAs(t, s, protocol.Subprotocol, "bearer."+body["access_token"].(string)), protocol.TypePresenceSnapshot)
	time.Sleep(500 * time.Millisecond) // the watcher (every 250 ms) has seen the new account
	if !snapshotHas(ann, cyID) {
		t.Fatal("an account created by `unhidra admin` is missing from annika's next snapshot")
	}
}

package chat_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/bus/local"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/chat/chatws"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/store/sqlite"
	"github.com/unhidra/unhidra/protocol"
)

// twoNodes is two chat nodes (service, gateway, HTTP server each) on one
// store and one bus, as in a cluster.
func twoNodes(t *testing.T) (*harness, *harness) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := &local.Bus{}
	node := func() *harness {
		router := hub.NewRouter(hub.New(), b, nil)
		gw, err := gateway.New(gateway.Config{}, router, nil)
		if err != nil {
			t.Fatal(err)
		}
		gw.SetAuthenticators(func(ctx context.Context, token string) (gateway.Identity, error) {
			u, err := db.UserByID(ctx, token)
			if err != nil {
				return gateway.Identity{}, unhidra.Errorf(protocol.ErrUnauthorized, "bad token")
			}
			return gateway.Identity{Kind: gateway.KindPerson, ID: u.ID, Name: u.Name}, nil
		}, nil)
		svc := chat.New(db, router, chat.Config{}, nil)
		chatws.Register(gw, svc)
		mux := http.NewServeMux()
		pass := func(next http.Handler) http.Handler { return next }
		gw.Mount(mux, api.Helpers{Log: slog.New(slog.DiscardHandler), RequireUser: pass, RequireAdmin: pass,
			ClientIP: func(*http.Request) string { return "127.0.0.1" }})
		srv := httptest.NewServer(mux)
		t.Cleanup(func() { gw.Close(); srv.Close(); svc.Close() })
		return &harness{t: t, db: db, svc: svc, gw: gw, srv: srv}
	}
	return node(), node()
}

// The member cache of a node must follow membership changes made on
// another node: a connection opened after an invite gets the channel's
// messages, one opened after a kick does not, and the presence snapshot
// lists the co-members of the moment.
func TestMemberCache_FollowsChangesFromAnotherNode(t *testing.T) {
	n1, n2 := twoNodes(t)
	ctx := context.Background()
	ann, bob := n1.user("ann", unhidra.RoleMember), n1.user("bob", unhidra.RoleMember)
	// Out of the default channel, ann and bob share nothing yet.
	for _, id := range []string{ann.ID, bob.ID} {
		if err := n1.db.RemoveMember(ctx, unhidra.GeneralChannelID, id); err != nil {
			t.Fatal(err)
		}
	}

	b2 := n2.dial(t, ann) // ann online on node 2
	// Fill node 1's cache for bob: no conversations, no co-members.
	dialSnapshot(t, n1, bob, func(users []any) {
		if hasUser(users, ann.ID) {
			t.Errorf("ann in bob's snapshot before they share a channel: %v", users)
		}
	}).close()

	ch, err := n2.svc.CreateChannel(ctx, ann, "plans", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.svc.Invite(ctx, ann, ch.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	// A connection of bob opened on node 1 after the invite follows the channel
	// and sees ann (online on node 2) in its snapshot.
	bobConn := dialSnapshot(t, n1, bob, func(users []any) {
		if !hasUser(users, ann.ID) {
			t.Errorf("snapshot after the invite misses ann: %v", users)
		}
	})
	b2.sendMsg(nextID(), ch.ID, "after invite")
	if m := bobConn.expect("message", nil); m.str("body") != "after invite" {
		t.Fatalf("got %v", m)
	}
	bobConn.close()

	if err := n2.svc.Kick(ctx, ann, ch.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	// After the kick, a new connection on node 1 must not get the channel.
	bobAgain := dialSnapshot(t, n1, bob, func(users []any) {
		if hasUser(users, ann.ID) {
			t.Errorf("snapshot after the kick still lists ann : %v", users)
		}
	})
	b2.sendMsg(nextID(), ch.ID, "after kick")
	// A probe through a DM shows bob's connection is live and ordered: the
	// kicked channel's message would have come before it.
	dm, err := n2.svc.OpenDM(ctx, ann, []string{bob.ID})
	if err != nil {
		t.Fatal(err)
	}
	bobAgain.expect(protocol.TypeConversationAdded, nil)
	b2.expect(protocol.TypeConversationAdded, nil)
	b2.sendMsg(nextID(), dm.ID, "probe")
	for {
		f := bobAgain.expect("message", nil)
		if f.str("body") == "after kick" {
			t.Fatal("a connection opened after the kick got the channel's message")
		}
		if f.str("body") == "probe" {
			break
		}
	}
}

// dialSnapshot dials and passes the users of the presence snapshot to check.
func dialSnapshot(t *testing.T, h *harness, a chat.Actor, check func(users []any)) *client {
	t.Helper()
	c := h.dialRaw(t, a)
	c.expect("welcome", nil)
	snap := c.expect("presence_snapshot", nil)
	users, _ := snap["users"].([]any)
	check(users)
	return c
}

func hasUser(users []any, id string) bool {
	for _, u := range users {
		if m, ok := u.(map[string]any); ok && m["user"] == id {
			return true
		}
	}
	return false
}

package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/protocol"
)

func testChat(t *testing.T, open Opener) {
	ctx := context.Background()
	setup := func(t *testing.T) (*sqldb.DB, *clock, *unhidra.User, *unhidra.User) {
		db := open(t)
		c := newClock(db)
		return db, c, mustCreateUser(t, db, "ann"), mustCreateUser(t, db, "bob")
	}
	mustChannel := func(t *testing.T, db *sqldb.DB, name, kind, owner string) *unhidra.Conversation {
		t.Helper()
		c := &unhidra.Conversation{Name: name, Kind: kind}
		if err := db.CreateChannel(ctx, c, owner); err != nil {
			t.Fatalf("CreateChannel(%q): %v", name, err)
		}
		return c
	}
	mustAppend := func(t *testing.T, db *sqldb.DB, reqs ...store.AppendRequest) []store.AppendResult {
		t.Helper()
		res, err := db.AppendMessages(ctx, reqs)
		if err != nil {
			t.Fatalf("AppendMessages: %v", err)
		}
		return res
	}

	t.Run("NewUsersJoinGeneral", func(t *testing.T) {
		db, _, ann, _ := setup(t)
		m, err := db.Membership(ctx, unhidra.GeneralChannelID, ann.ID)
		if err != nil || m.Role != unhidra.ChanMember {
			t.Fatalf("general membership = %+v, %v", m, err)
		}
		c, err := db.ConversationByID(ctx, unhidra.GeneralChannelID)
		if err != nil || c.Kind != unhidra.KindPublic || c.Name != "general" {
			t.Fatalf("general = %+v, %v", c, err)
		}
	})

	t.Run("Channels", func(t *testing.T) {
		db, _, ann, bob := setup(t)
		c := mustChannel(t, db, "Ops", unhidra.KindPrivate, ann.ID)
		if m, err := db.Membership(ctx, c.ID, ann.ID); err != nil || m.Role != unhidra.ChanOwner {
			t.Fatalf("creator membership = %+v, %v", m, err)
		}
		err := db.CreateChannel(ctx, &unhidra.Conversation{Name: "ops", Kind: unhidra.KindPublic}, bob.ID)
		wantCode(t, err, protocol.ErrConflict)
		pub := mustChannel(t, db, "lobby", unhidra.KindPublic, bob.ID)
		if _, err := db.RenameChannel(ctx, pub.ID, "OPS"); unhidra.ErrorCode(err) != protocol.ErrConflict {
			t.Fatalf("rename onto a taken name: %v", err)
		}
		got, err := db.RenameChannel(ctx, pub.ID, "hall")
		if err != nil || got.Name != "hall" {
			t.Fatalf("rename = %+v, %v", got, err)
		}
		_, err = db.RenameChannel(ctx, "chn_nope", "x")
		wantCode(t, err, protocol.ErrNotFound)

		// ann sees general, ops (member), hall (public, not member); bob does not see ops.
		views, err := db.ConversationPage(ctx, ann.ID, false, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, v := range views {
			seen[v.Name] = v.Member
		}
		if want := map[string]bool{"general": true, "Ops": true, "hall": false}; fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("ann's view = %v, want %v", seen, want)
		}
		views, _ = db.Conversations(ctx, bob.ID)
		for _, v := range views {
			if v.ID == c.ID {
				t.Fatal("a non-member sees a private channel")
			}
		}
		// The same lists a page at a time: channels (with the public ones ann
		// is not in) and DMs (with their members), in ID order.
		dm, _, err := db.OpenDM(ctx, ann.ID, []string{ann.ID, bob.ID})
		if err != nil {
			t.Fatal(err)
		}
		walk := func(member string, dms bool) (ids []string, members [][]string) {
			after := ""
			for range 10 {
				page, err := db.ConversationPage(ctx, member, dms, after, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					return ids, members
				}
				if len(page) != 1 {
					t.Fatalf("page of 1 has %d", len(page))
				}
				ids, members, after = append(ids, page[0].ID), append(members, page[0].Members), page[0].ID
			}
			t.Fatal("pages do not end")
			return nil, nil
		}
		chans, _ := walk(ann.ID, false)
		if want := []string{unhidra.GeneralChannelID, c.ID, pub.ID}; !slices.Equal(chans, slices.Sorted(slices.Values(want))) {
			t.Fatalf("ann's channel pages = %v, want %v sorted", chans, want)
		}
		if chans, _ := walk(bob.ID, false); slices.Contains(chans, c.ID) || len(chans) != 2 {
			t.Fatalf("bob's channel pages = %v: general and hall, not the private one", chans)
		}
		dmIDs, dmMembers := walk(ann.ID, true)
		if !slices.Equal(dmIDs, []string{dm.ID}) || !slices.Equal(dmMembers[0], slices.Sorted(slices.Values([]string{ann.ID, bob.ID}))) {
			t.Fatalf("ann's DM pages = %v %v", dmIDs, dmMembers)
		}
		if all, _ := db.ConversationPage(ctx, ann.ID, false, "", 100); len(all) != 3 {
			t.Fatalf("one page of 100 = %d channels, want 3", len(all))
		}
		if _, err := db.AddMember(ctx, c.ID, bob.ID, unhidra.ChanMember); err != nil {
			t.Fatal(err)
		}
		_, err = db.AddMember(ctx, c.ID, bob.ID, unhidra.ChanMember)
		wantCode(t, err, protocol.ErrConflict)
		_, err = db.AddMember(ctx, "chn_nope", bob.ID, unhidra.ChanMember)
		wantCode(t, err, protocol.ErrNotFound)
		if ms, err := db.Members(ctx, c.ID); err != nil || len(ms) != 2 {
			t.Fatalf("members = %v, %v", ms, err)
		}
		if co, err := db.CoMembers(ctx, ann.ID); err != nil || !slices.Equal(co, []string{bob.ID}) {
			t.Fatalf("CoMembers = %v, %v", co, err)
		}
		if err := db.RemoveMember(ctx, c.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.RemoveMember(ctx, c.ID, bob.ID), protocol.ErrNotFound)
		if ids, err := db.ConversationIDs(ctx, bob.ID); err != nil || slices.Contains(ids, c.ID) {
			t.Fatalf("ConversationIDs after removal = %v, %v", ids, err)
		}
	})

	t.Run("DMs", func(t *testing.T) {
		db, _, ann, bob := setup(t)
		c1, created, err := db.OpenDM(ctx, ann.ID, []string{ann.ID, bob.ID})
		if err != nil || !created || c1.Kind != unhidra.KindDM {
			t.Fatalf("OpenDM = %+v, %v, %v", c1, created, err)
		}
		c2, created, err := db.OpenDM(ctx, bob.ID, []string{bob.ID, ann.ID})
		if err != nil || created || c2.ID != c1.ID {
			t.Fatalf("reopen = %+v, %v, %v; want the same conversation", c2, created, err)
		}
		views, _ := db.ConversationPage(ctx, bob.ID, true, "", 100)
		if len(views) != 1 {
			t.Fatalf("bob's DM list = %d conversations, want 1", len(views))
		}
		for _, v := range views {
			if want := []string{ann.ID, bob.ID}; v.ID == c1.ID && !slices.Equal(v.Members, slices.Sorted(slices.Values(want))) {
				t.Fatalf("dm members = %v", v.Members)
			}
		}
		_, err = db.RenameChannel(ctx, c1.ID, "x")
		wantCode(t, err, protocol.ErrNotFound)
	})

	t.Run("AppendGapFreeAndIdempotent", func(t *testing.T) {
		db, c, ann, bob := setup(t)
		ch := mustChannel(t, db, "dev", unhidra.KindPublic, ann.ID)
		res := mustAppend(t, db,
			store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, ClientID: "a1", Body: "one"},
			store.AppendRequest{ConversationID: ch.ID, SenderID: bob.ID, ClientID: "b1", Body: "not a member"},
			store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, ClientID: "a2", Body: "two"},
			store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, ClientID: "a1", Body: "retry of one"},
		)
		if res[0].Err != nil || res[0].Message.Seq != 1 || res[2].Message.Seq != 2 {
			t.Fatalf("seqs: %+v %+v", res[0], res[2])
		}
		if unhidra.ErrorCode(res[1].Err) != protocol.ErrNotFound {
			t.Fatalf("non-member append: %v", res[1].Err)
		}
		if !res[3].Duplicate || res[3].Message.ID != res[0].Message.ID || res[3].Message.Body != "one" {
			t.Fatalf("retry in the same batch = %+v", res[3])
		}
		// A retry in a later batch, and the same client id from another sender.
		db.AddMember(ctx, ch.ID, bob.ID, unhidra.ChanMember)
		res = mustAppend(t, db,
			store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, ClientID: "a2", Body: "two again"},
			store.AppendRequest{ConversationID: ch.ID, SenderID: bob.ID, ClientID: "a2", Body: "bob's own a2"},
		)
		if !res[0].Duplicate || res[0].Message.Seq != 2 || res[1].Duplicate || res[1].Message.Seq != 3 {
			t.Fatalf("later batch = %+v %+v", res[0], res[1])
		}
		conv, _ := db.ConversationByID(ctx, ch.ID)
		if conv.LastSeq != 3 {
			t.Fatalf("last_seq = %d, want 3", conv.LastSeq)
		}
		if m, _ := db.Membership(ctx, ch.ID, ann.ID); m.LastReadSeq != 2 {
			t.Fatalf("sender's read position = %d, want 2 (own message)", m.LastReadSeq)
		}
		// Keys expire: after the cutoff the same id stores a new message.
		c.add(25 * time.Hour)
		if n, err := db.DeleteIdempotencyKeys(ctx, c.now().Add(-24*time.Hour)); err != nil || n != 3 {
			t.Fatalf("DeleteIdempotencyKeys = %d, %v; want 3", n, err)
		}
		res = mustAppend(t, db, store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, ClientID: "a1", Body: "new"})
		if res[0].Duplicate || res[0].Message.Seq != 4 {
			t.Fatalf("after expiry = %+v", res[0])
		}
		// Archived channels refuse messages.
		db.ArchiveChannel(ctx, ch.ID)
		res = mustAppend(t, db, store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, Body: "late"})
		if unhidra.ErrorCode(res[0].Err) != protocol.ErrForbidden {
			t.Fatalf("append to archived: %v", res[0].Err)
		}
	})

	t.Run("LastSeqsAndMemberIDsOfMany", func(t *testing.T) {
		db, _, ann, bob := setup(t)
		quiet := mustChannel(t, db, "quiet", unhidra.KindPrivate, ann.ID)
		busy := mustChannel(t, db, "busy", unhidra.KindPublic, ann.ID)
		if _, err := db.AddMember(ctx, busy.ID, bob.ID, unhidra.ChanMember); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			mustAppend(t, db, store.AppendRequest{ConversationID: busy.ID, SenderID: bob.ID, Body: fmt.Sprint(i)})
		}
		// More IDs than one query binds, most of them of no conversation,
		// the real ones last, and one twice.
		ids := []string{""}
		for i := range 300 {
			ids = append(ids, fmt.Sprintf("c_missing%03d", i))
		}
		ids = append(ids, quiet.ID, busy.ID, busy.ID)
		seqs, err := db.LastSeqs(ctx, ids)
		if err != nil || len(seqs) != 2 || seqs[quiet.ID] != 0 || seqs[busy.ID] != 3 {
			t.Fatalf("LastSeqs = %v, %v; want %s:0 %s:3", seqs, err, quiet.ID, busy.ID)
		}
		members, err := db.MemberIDs(ctx, ids)
		if err != nil || len(members) != 2 {
			t.Fatalf("MemberIDs = %v, %v", members, err)
		}
		slices.Sort(members[busy.ID])
		if want := slices.Sorted(slices.Values([]string{ann.ID, bob.ID})); !slices.Equal(members[busy.ID], want) {
			t.Fatalf("members of busy = %v, want %v", members[busy.ID], want)
		}
		if !slices.Equal(members[quiet.ID], []string{ann.ID}) {
			t.Fatalf("members of quiet = %v, want [%s]", members[quiet.ID], ann.ID)
		}
		// A removal is seen; none of nothing is no error.
		if err := db.RemoveMember(ctx, busy.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		if members, err := db.MemberIDs(ctx, []string{busy.ID}); err != nil || !slices.Equal(members[busy.ID], []string{ann.ID}) {
			t.Fatalf("MemberIDs after removal = %v, %v", members, err)
		}
		if seqs, err := db.LastSeqs(ctx, nil); err != nil || len(seqs) != 0 {
			t.Fatalf("LastSeqs(nil) = %v, %v", seqs, err)
		}
	})

	t.Run("ConcurrentAppendsAreGapFree", func(t *testing.T) {
		db, _, ann, _ := setup(t)
		ch := mustChannel(t, db, "busy", unhidra.KindPublic, ann.ID)
		const workers, batches, per = 4, 10, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range batches {
					reqs := make([]store.AppendRequest, per)
					for i := range reqs {
						reqs[i] = store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, ClientID: fmt.Sprintf("%d-%d-%d", w, b, i), Body: "x"}
					}
					if _, err := db.AppendMessages(ctx, reqs); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var all []*unhidra.Message
		after := int64(0)
		for {
			page, more, err := db.History(ctx, store.HistoryQuery{ConversationID: ch.ID, After: after, Limit: 200})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if !more {
				break
			}
			after = page[len(page)-1].Seq
		}
		if len(all) != workers*batches*per {
			t.Fatalf("%d messages stored, want %d", len(all), workers*batches*per)
		}
		for i, m := range all {
			if m.Seq != int64(i+1) {
				t.Fatalf("message %d has seq %d: not gap-free", i, m.Seq)
			}
		}
	})

	t.Run("HistoryEditDeleteRead", func(t *testing.T) {
		db, _, ann, _ := setup(t)
		ch := mustChannel(t, db, "log", unhidra.KindPublic, ann.ID)
		var reqs []store.AppendRequest
		for i := range 10 {
			reqs = append(reqs, store.AppendRequest{ConversationID: ch.ID, SenderID: ann.ID, Body: fmt.Sprint(i + 1)})
		}
		res := mustAppend(t, db, reqs...)
		seqs := func(ms []*unhidra.Message) []int64 {
			var out []int64
			for _, m := range ms {
				out = append(out, m.Seq)
			}
			return out
		}
		cases := []struct {
			q    store.HistoryQuery
			want []int64
			more bool
		}{
			{store.HistoryQuery{Limit: 3}, []int64{8, 9, 10}, true},
			{store.HistoryQuery{Before: 4, Limit: 3}, []int64{1, 2, 3}, false},
			{store.HistoryQuery{After: 7, Limit: 2}, []int64{8, 9}, true},
			{store.HistoryQuery{After: 8}, []int64{9, 10}, false},
			{store.HistoryQuery{After: 2, Before: 5}, []int64{3, 4}, false},
			{store.HistoryQuery{After: 10}, nil, false},
			{store.HistoryQuery{Forward: true, Limit: 2}, []int64{1, 2}, true},
			{store.HistoryQuery{Limit: 100000}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false},
		}
		for _, c := range cases {
			c.q.ConversationID = ch.ID
			got, more, err := db.History(ctx, c.q)
			if err != nil || !slices.Equal(seqs(got), c.want) || more != c.more {
				t.Errorf("History(%+v) = %v, %v, %v; want %v, %v", c.q, seqs(got), more, err, c.want, c.more)
			}
		}
		id := res[4].Message.ID
		m, err := db.EditMessage(ctx, id, "five, edited")
		if err != nil || m.Body != "five, edited" || m.EditedAt.IsZero() || m.Seq != 5 {
			t.Fatalf("edit = %+v, %v", m, err)
		}
		m, err = db.DeleteMessage(ctx, id)
		if err != nil || m.Body != "" || m.DeletedAt.IsZero() {
			t.Fatalf("delete = %+v, %v", m, err)
		}
		_, err = db.EditMessage(ctx, id, "again")
		wantCode(t, err, protocol.ErrNotFound)
		_, err = db.DeleteMessage(ctx, id)
		wantCode(t, err, protocol.ErrNotFound)
		_, err = db.MessageByID(ctx, "msg_nope")
		wantCode(t, err, protocol.ErrNotFound)

		bob := mustCreateUser(t, db, "carl")
		db.AddMember(ctx, ch.ID, bob.ID, unhidra.ChanMember)
		for _, c := range []struct{ seq, want int64 }{{4, 4}, {2, 4}, {99, 10}} {
			if got, err := db.MarkRead(ctx, ch.ID, bob.ID, c.seq); err != nil || got != c.want {
				t.Errorf("MarkRead(%d) = %d, %v; want %d", c.seq, got, err, c.want)
			}
		}
		_, err = db.MarkRead(ctx, ch.ID, "usr_stranger", 1)
		wantCode(t, err, protocol.ErrNotFound)
	})
}

package main

import (
	"fmt"
	"testing"
)

// TestChat_ChannelQuotaAndPagination: a member creates channels up to the
// quota, then gets 429 with Retry-After; an administrator is not bound by
// it. Channel lists come in pages that together hold every channel once.
func TestChat_ChannelQuotaAndPagination(t *testing.T) {
	s := startServer(t, t.TempDir(), map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}, "--channels-per-hour", "5")
	_, member := register(t, s, "member")
	for i := range 5 {
		if st, body := s.request(t, "POST", "/api/v1/channels", member, map[string]any{"name": fmt.Sprintf("m%d", i)}); st != 201 {
			t.Fatalf("channel %d within the quota: %d %v", i, st, body)
		}
	}
	st, body := s.request(t, "POST", "/api/v1/channels", member, map[string]any{"name": "one-too-many"})
	if st != 429 || body["error"].(map[string]any)["code"] != "rate_limited" {
		t.Fatalf("over the quota: %d %v", st, body)
	}
	_, resp := s.post(t, "/api/v1/auth/login", "", map[string]string{"name": "admin", "password": "correct horse battery"})
	admin := resp["access_token"].(string)
	for i := range 10 {
		if st, body := s.request(t, "POST", "/api/v1/channels", admin, map[string]any{"name": fmt.Sprintf("a%d", i)}); st != 201 {
			t.Fatalf("administrator's channel %d: %d %v", i, st, body)
		}
	}
	// 16 channels in all (general, 5, 10), in pages of 3.
	seen := map[string]bool{}
	after, pages := "", 0
	for {
		path := "/api/v1/channels?limit=3"
		if after != "" {
			path += "&after=" + after
		}
		st, body := s.request(t, "GET", path, member, nil)
		if st != 200 {
			t.Fatalf("page %d: %d %v", pages, st, body)
		}
		pages++
		list := body["channels"].([]any)
		if len(list) > 3 {
			t.Fatalf("page of %d", len(list))
		}
		for _, c := range list {
			id := c.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("channel %s on two pages", id)
			}
			seen[id] = true
		}
		next, _ := body["next_cursor"].(string)
		if next == "" {
			break
		}
		after = next
	}
	if len(seen) != 16 || pages != 6 {
		t.Fatalf("%d channels in %d pages, want 16 in 6", len(seen), pages)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "after=" + string(make([]byte, 0)) + "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"} {
		if st, _ := s.request(t, "GET", "/api/v1/channels?"+q, member, nil); st != 400 {
			t.Errorf("?%s: %d, want 400", q, st)
		}
	}
	if st, body := s.request(t, "GET", "/api/v1/dms?limit=2", member, nil); st != 200 || body["dms"] == nil {
		t.Fatalf("dms page: %d %v", st, body)
	}
}

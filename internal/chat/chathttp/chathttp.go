// Package chathttp is the messaging service's REST adapter: the
// /api/v1/channels and /api/v1/dms routes, decoded and authenticated the
// API's way and answered by calls of chat.Service.
package chathttp

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/protocol"
)

// Mount returns the function that adds the messaging REST routes. Every route requires a signed-in
// user; the caller's identity comes from its token only.
func Mount(s *chat.Service) func(mux *http.ServeMux, h api.Helpers) {
	return func(mux *http.ServeMux, h api.Helpers) { mount(s, mux, h) }
}

func mount(s *chat.Service, mux *http.ServeMux, h api.Helpers) {
	user := h.RequireUser
	route := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, actor chat.Actor) error) {
		mux.Handle(pattern, user(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u := auth.UserFromContext(r.Context())
			if err := fn(w, r, chat.Actor{ID: u.ID, Name: u.Name, Admin: u.IsAdmin()}); err != nil {
				h.Error(w, r, err)
			}
		})))
	}
	ok := func(w http.ResponseWriter, status int, v any) error { h.JSON(w, status, v); return nil }

	route("GET /api/v1/channels", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		page, next, err := listPage(r, s, a, false)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, withCursor(map[string]any{"channels": page}, next))
	})
	route("POST /api/v1/channels", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.DecodeValid[createChannelRequest](w, r)
		if err != nil {
			return err
		}
		c, err := s.CreateChannel(r.Context(), a, in.Name, in.Private)
		if err != nil {
			return err
		}
		return ok(w, http.StatusCreated, c)
	})
	route("GET /api/v1/channels/{id}", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		c, m, err := s.Channel(r.Context(), a, r.PathValue("id"))
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, map[string]any{"channel": c, "membership": m})
	})
	route("PATCH /api/v1/channels/{id}", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.DecodeValid[renameRequest](w, r)
		if err != nil {
			return err
		}
		c, err := s.Rename(r.Context(), a, r.PathValue("id"), in.Name)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, c)
	})
	route("POST /api/v1/channels/{id}/archive", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		c, err := s.Archive(r.Context(), a, r.PathValue("id"))
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, c)
	})
	route("POST /api/v1/channels/{id}/join", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		if err := s.Join(r.Context(), a, r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	route("POST /api/v1/channels/{id}/leave", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		if err := s.Leave(r.Context(), a, r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	route("GET /api/v1/channels/{id}/members", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		ms, err := s.Members(r.Context(), a, r.PathValue("id"))
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, map[string]any{"members": ms})
	})
	route("POST /api/v1/channels/{id}/members", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.DecodeValid[inviteRequest](w, r)
		if err != nil {
			return err
		}
		m, err := s.Invite(r.Context(), a, r.PathValue("id"), in.Member)
		if err != nil {
			return err
		}
		return ok(w, http.StatusCreated, m)
	})
	route("DELETE /api/v1/channels/{id}/members/{member}", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		if err := s.Kick(r.Context(), a, r.PathValue("id"), r.PathValue("member")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	route("GET /api/v1/channels/{id}/messages", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		q := r.URL.Query()
		before, err1 := queryInt(q, "before")
		after, err2 := queryInt(q, "after")
		limit, err3 := queryInt(q, "limit")
		if err1 != nil || err2 != nil || err3 != nil {
			return unhidra.Errorf(protocol.ErrInvalid, "before, after and limit must be non-negative integers.")
		}
		n := 0
		if limit != nil {
			n = int(min(*limit, 1000))
		}
		page, err := s.History(r.Context(), a, r.PathValue("id"), before, after, n)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, page)
	})
	route("POST /api/v1/channels/{id}/messages", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.Decode[sendRequest](w, r)
		if err != nil {
			return err
		}
		m, dup, err := s.Send(r.Context(), a, chat.SendInput{Channel: r.PathValue("id"), Body: in.Body, ClientID: in.ID}, nil)
		if err != nil {
			return err
		}
		status := http.StatusCreated
		if dup {
			status = http.StatusOK
		}
		return ok(w, status, s.MessageFrame(r.Context(), m))
	})
	route("PATCH /api/v1/channels/{id}/messages/{message}", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.Decode[sendRequest](w, r)
		if err != nil {
			return err
		}
		m, err := s.Edit(r.Context(), a, r.PathValue("id"), r.PathValue("message"), in.Body)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, s.MessageFrame(r.Context(), m))
	})
	route("DELETE /api/v1/channels/{id}/messages/{message}", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		if _, err := s.Delete(r.Context(), a, r.PathValue("id"), r.PathValue("message")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	route("POST /api/v1/channels/{id}/read", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.Decode[readRequest](w, r)
		if err != nil {
			return err
		}
		seq, err := s.MarkRead(r.Context(), a, r.PathValue("id"), in.Seq)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, map[string]int64{"last_read_seq": seq})
	})
	route("GET /api/v1/dms", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		page, next, err := listPage(r, s, a, true)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, withCursor(map[string]any{"dms": page}, next))
	})
	route("POST /api/v1/dms", func(w http.ResponseWriter, r *http.Request, a chat.Actor) error {
		in, err := api.DecodeValid[openDMRequest](w, r)
		if err != nil {
			return err
		}
		c, err := s.OpenDM(r.Context(), a, in.Members)
		if err != nil {
			return err
		}
		return ok(w, http.StatusOK, c)
	})
}

// queryInt parses an optional non-negative integer parameter (nil: absent).
func queryInt(q url.Values, key string) (*int64, error) {
	if !q.Has(key) {
		return nil, nil
	}
	n, err := strconv.ParseInt(q.Get(key), 10, 64)
	if err != nil || n < 0 {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Not a non-negative integer.")
	}
	return &n, nil
}

type createChannelRequest struct {
	Name    string `json:"name"`
	Private bool   `json:"private"`
}

func (r createChannelRequest) Valid(context.Context) error { return chat.ValidChannelName(r.Name) }

type renameRequest struct {
	Name string `json:"name"`
}

func (r renameRequest) Valid(context.Context) error { return chat.ValidChannelName(r.Name) }

type inviteRequest struct {
	Member string `json:"member"` // a user ID or name
}

func (r inviteRequest) Valid(context.Context) error {
	if r.Member == "" || len(r.Member) > unhidra.MaxMemberIDLen {
		return unhidra.Errorf(protocol.ErrInvalid, "member must be a user ID or name.")
	}
	return nil
}

type sendRequest struct {
	ID   string `json:"id"` // idempotency key, optional
	Body string `json:"body"`
}

type readRequest struct {
	Seq int64 `json:"seq"`
}

type openDMRequest struct {
	Members []string `json:"members"` // user IDs or names, the caller excluded
}

func (r openDMRequest) Valid(context.Context) error {
	if len(r.Members) == 0 || len(r.Members) >= unhidra.MaxDMMembers {
		return unhidra.Errorf(protocol.ErrInvalid, "members must name 1 to %d users.", unhidra.MaxDMMembers-1)
	}
	return nil
}

// List pages: ?limit=N (1..MaxPage, default DefaultPage) and ?after=ID
// (the next_cursor of the previous page). Lists are in ID order.
const (
	DefaultPage = 100
	MaxPage     = 500
)

// listPage reads ?limit and ?after and returns that page of the caller's
// channel list (or, with dms, its DM list) and the next page's cursor.
func listPage(r *http.Request, s *chat.Service, a chat.Actor, dms bool) (page []chat.ChannelView, next string, err error) {
	q := r.URL.Query()
	limit := DefaultPage
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxPage {
			return nil, "", unhidra.Errorf(protocol.ErrInvalid, "limit must be an integer from 1 to %d.", MaxPage)
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > unhidra.MaxMemberIDLen {
		return nil, "", unhidra.Errorf(protocol.ErrInvalid, "after is not a cursor of this list.")
	}
	return s.ListPage(r.Context(), a, dms, after, limit)
}

func withCursor(body map[string]any, next string) map[string]any {
	if next != "" {
		body["next_cursor"] = next
	}
	return body
}

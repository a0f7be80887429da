package api

import (
	"context"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

func handleAdminUsers(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := store.UserFilter{After: q.Get("after")}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrInvalid, "limit must be 1 to 1000."))
				return
			}
			f.Limit = n
		}
		if v := q.Get("role"); v != "" {
			role := unhidra.Role(v)
			if !role.Valid() {
				httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrInvalid, "Unknown role."))
				return
			}
			f.Role = &role
		}
		if v := q.Get("disabled"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrInvalid, "disabled must be true or false."))
				return
			}
			f.Disabled = &b
		}
		users, err := d.Store.Users(r.Context(), f)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		if users == nil {
			users = []*unhidra.User{}
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"users": users})
	})
}

type createUserRequest struct {
	Name     string       `json:"name"`
	Password string       `json:"password"`
	Role     unhidra.Role `json:"role"`
}

func (c createUserRequest) Valid(context.Context) error {
	if c.Name == "" || (c.Password == "" && c.Role != unhidra.RoleBot) {
		return unhidra.Errorf(protocol.ErrInvalid, "name and password are required (bots have no password).")
	}
	return nil
}

func handleAdminCreateUser(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[createUserRequest](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		if in.Role == "" {
			in.Role = unhidra.RoleMember
		}
		u, err := d.Accounts.CreateUser(r.Context(), auth.UserFromContext(r.Context()), in.Name, in.Password, in.Role, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusCreated, map[string]any{"user": u})
	})
}

func handleAdminSetDisabled(d Deps, disabled bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := d.Accounts.SetDisabled(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id"), disabled, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"user": u})
	})
}

type resetPasswordRequest struct {
	Password string `json:"password"`
}

func (p resetPasswordRequest) Valid(context.Context) error {
	if p.Password == "" {
		return unhidra.Errorf(protocol.ErrInvalid, "password is required.")
	}
	return nil
}

func handleAdminResetPassword(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[resetPasswordRequest](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		if err := d.Accounts.ResetPassword(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id"), in.Password, d.request(r)); err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

type setRoleRequest struct {
	Role unhidra.Role `json:"role"`
}

func (p setRoleRequest) Valid(context.Context) error {
	if p.Role != unhidra.RoleAdmin && p.Role != unhidra.RoleMember {
		return unhidra.Errorf(protocol.ErrInvalid, "role must be admin or member.")
	}
	return nil
}

// handleAdminSetRole changes a person's role; their sessions end.
func handleAdminSetRole(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[setRoleRequest](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		u, err := d.Accounts.SetRole(r.Context(), auth.UserFromContext(r.Context()), r.PathValue("id"), in.Role, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"user": u})
	})
}

// parseTime accepts RFC 3339 or Unix seconds.
func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, unhidra.Errorf(protocol.ErrInvalid, "Times must be RFC 3339 or Unix seconds.")
	}
	return time.Unix(n, 0), nil
}

func handleAdminAudit(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := store.AuditFilter{Action: q.Get("action"), ActorID: q.Get("actor"), Target: q.Get("target")}
		for _, s := range []string{f.Action, f.ActorID, f.Target} {
			if len(s) > 128 {
				httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrInvalid, "Filter values are at most 128 bytes."))
				return
			}
		}
		var err error
		if v := q.Get("since"); v != "" {
			if f.Since, err = parseTime(v); err != nil {
				httpx.WriteError(w, r, d.Log, err)
				return
			}
		}
		if v := q.Get("until"); v != "" {
			if f.Until, err = parseTime(v); err != nil {
				httpx.WriteError(w, r, d.Log, err)
				return
			}
		}
		if v := q.Get("before"); v != "" {
			if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before < 0 {
				httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrInvalid, "before must be an event id."))
				return
			}
		}
		if v := q.Get("limit"); v != "" {
			if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
				httpx.WriteError(w, r, d.Log, unhidra.Errorf(protocol.ErrInvalid, "limit must be 1 to 1000."))
				return
			}
		}
		events, err := d.Store.AuditEvents(r.Context(), f)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		if events == nil {
			events = []*unhidra.AuditEvent{}
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"events": events})
	})
}

func handleAdminRotateKeys(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor := auth.UserFromContext(r.Context())
		kid, err := d.Accounts.RotateSigningKey(r.Context(), actor, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]string{"active_kid": kid})
	})
}

// handleFreeMemory forces a garbage collection and returns freed memory to
// the operating system, then reports the runtime's memory. Memory
// measurements (unhidra bench conns) call it so that they compare live
// memory, not whatever garbage a burst left behind.
func handleFreeMemory() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		httpx.JSON(w, http.StatusOK, map[string]uint64{
			"heap_inuse": m.HeapInuse, "heap_released": m.HeapReleased, "stack_inuse": m.StackInuse,
			"sys": m.Sys, "goroutines": uint64(runtime.NumGoroutine()),
		})
	})
}

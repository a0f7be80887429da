package api

import (
	"context"
	"net/http"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/protocol"
)

var errNoRoute = unhidra.Errorf(protocol.ErrNotFound, "No such endpoint.")

// credentials is the body of register, login and bootstrap.
type credentials struct {
	Name        string `json:"name"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name,omitempty"`
	Code        string `json:"code,omitempty"` // bootstrap only
}

func (c credentials) Valid(context.Context) error {
	if c.Name == "" || c.Password == "" {
		return unhidra.Errorf(protocol.ErrInvalid, "Name and password are required.")
	}
	return nil
}

func handleRegister(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[credentials](w, r)
		if err == nil && in.Code != "" {
			err = unhidra.Errorf(protocol.ErrInvalid, "Unknown field \"code\".")
		}
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		s, err := d.Accounts.Register(r.Context(), in.Name, in.Password, in.DisplayName, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusCreated, s)
	})
}

func handleLogin(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[credentials](w, r)
		if err != nil {
			d.metrics.login(err)
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		s, err := d.Accounts.Login(r.Context(), in.Name, in.Password, d.request(r))
		d.metrics.login(err)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, s)
	})
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (q refreshRequest) Valid(context.Context) error {
	if q.RefreshToken == "" {
		return unhidra.Errorf(protocol.ErrInvalid, "refresh_token is required.")
	}
	return nil
}

func handleRefresh(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[refreshRequest](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		s, err := d.Accounts.Refresh(r.Context(), in.RefreshToken, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, s)
	})
}

func handleLogout(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[refreshRequest](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		if err := d.Accounts.Logout(r.Context(), auth.UserFromContext(r.Context()), in.RefreshToken, d.request(r)); err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleLogoutEverywhere ends every session of the caller on every node:
// access tokens, refresh tokens and live connections.
func handleLogoutEverywhere(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := d.Accounts.SignOutEverywhere(r.Context(), auth.UserFromContext(r.Context()), d.request(r)); err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func handleBootstrapStatus(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]bool{"pending": d.Accounts.BootstrapPending()})
	})
}

func handleBootstrap(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[credentials](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		s, err := d.Accounts.Bootstrap(r.Context(), in.Code, in.Name, in.Password, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusCreated, s)
	})
}

func handleMe() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]any{"user": auth.UserFromContext(r.Context())})
	})
}

type passwordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

func (p passwordChange) Valid(context.Context) error {
	if p.CurrentPassword == "" || p.NewPassword == "" {
		return unhidra.Errorf(protocol.ErrInvalid, "current_password and new_password are required.")
	}
	return nil
}

func handleChangePassword(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := decodeValid[passwordChange](w, r)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		s, err := d.Accounts.ChangePassword(r.Context(), auth.UserFromContext(r.Context()), in.CurrentPassword, in.NewPassword, d.request(r))
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, s)
	})
}

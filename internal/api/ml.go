package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/protocol"
)

// ML is the narrow interface through which the API reaches inference
// (mlbridge.AppView over the worker supervisor, in the server). Errors are
// application errors (unhidra.Error) with client-safe messages; Models and
// Workers return JSON-encodable lists the API serves as they are.
type ML interface {
	Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error)
	Models(ctx context.Context) (any, error)
	Workers() any
}

// MaxInferBytes bounds an inference request: device series are larger than
// ordinary API bodies.
const MaxInferBytes = 1 << 20

type inferRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
}

func (q inferRequest) Valid(context.Context) error {
	if q.Model == "" || len(q.Model) > 64 {
		return unhidra.Errorf(protocol.ErrInvalid, "model is required (at most 64 characters).")
	}
	if len(q.Input) == 0 {
		return unhidra.Errorf(protocol.ErrInvalid, "input is required.")
	}
	return nil
}

// handleInfer runs a model for a signed-in user, rate-limited per user.
func handleInfer(d Deps) http.Handler {
	perUser := ratelimit.NewKeyed(ratelimit.Limit{Burst: 20, Every: 200 * time.Millisecond}, 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := auth.UserFromContext(r.Context())
		if ok, retry := perUser.Allow(u.ID, time.Now()); !ok {
			e := unhidra.Errorf(protocol.ErrRateLimited, "Too many inference requests.")
			e.RetryAfter = int64(retry/time.Second) + 1
			httpx.WriteError(w, r, d.Log, e)
			return
		}
		in, err := decodeLimit[inferRequest](w, r, MaxInferBytes)
		if err == nil {
			err = in.Valid(r.Context())
		}
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		start := time.Now()
		out, err := d.ML.Infer(r.Context(), in.Model, in.Input)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"model": in.Model, "result": out,
			"duration_ms": float64(time.Since(start).Microseconds()) / 1000})
	})
}

func handleModels(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		models, err := d.ML.Models(r.Context())
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"models": models})
	})
}

func handleMLWorkers(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]any{"workers": d.ML.Workers()})
	})
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/mlbridge"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/protocol"
)

// ML is what the API needs of the ML bridge (*mlbridge.Supervisor).
type ML interface {
	Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error)
	Models(ctx context.Context) ([]mlbridge.ModelInfo, error)
	Status() []mlbridge.WorkerStatus
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

// mlError maps the bridge's errors to application errors.
func mlError(err error) error {
	var me *mlbridge.ModelError
	switch {
	case errors.As(err, &me):
		return unhidra.Errorf(protocol.ErrUnprocessable, "%s", me.Message)
	case errors.Is(err, mlbridge.ErrSaturated):
		e := unhidra.Errorf(protocol.ErrUnavailable, "The inference workers are busy; retry shortly.")
		e.RetryAfter = 1
		return e
	case errors.Is(err, mlbridge.ErrClosed):
		return unhidra.Errorf(protocol.ErrUnavailable, "Inference is not available on this server.")
	case errors.Is(err, mlbridge.ErrTimeout):
		return unhidra.Errorf(protocol.ErrTimeout, "The model did not answer in time.")
	case errors.Is(err, mlbridge.ErrWorkerCrashed), errors.Is(err, mlbridge.ErrProtocol):
		return &unhidra.Error{Code: protocol.ErrUpstream, Message: "The inference worker failed; retry.", Err: err}
	case errors.Is(err, mlbridge.ErrInvalidInput):
		return unhidra.Errorf(protocol.ErrInvalid, "Invalid model name or input.")
	case errors.Is(err, mlbridge.ErrTooLarge):
		return unhidra.Errorf(protocol.ErrTooLarge, "The input is too large for the inference workers.")
	case errors.Is(err, mlbridge.ErrUnsupported):
		return unhidra.Errorf(protocol.ErrNotImplemented, "The inference worker does not support this.")
	}
	return err
}

// handleInfer runs a model for a signed-in user, rate-limited per user.
func handleInfer(d Deps) http.Handler {
	perUser := ratelimit.NewKeyed(ratelimit.Limit{Burst: 20, Every: 200 * time.Millisecond}, 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := auth.UserFromContext(r.Context())
		if ok, retry := perUser.Allow(u.ID, time.Now()); !ok {
			e := unhidra.Errorf(protocol.ErrRateLimited, "Too many inference requests.")
			e.RetryAfter = int64(retry/time.Second) + 1
			writeError(w, r, d.Log, e)
			return
		}
		in, err := decodeLimit[inferRequest](w, r, MaxInferBytes)
		if err == nil {
			err = in.Valid(r.Context())
		}
		if err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		start := time.Now()
		out, err := d.ML.Infer(r.Context(), in.Model, in.Input)
		if err != nil {
			writeError(w, r, d.Log, mlError(err))
			return
		}
		encode(w, http.StatusOK, map[string]any{"model": in.Model, "result": out,
			"duration_ms": float64(time.Since(start).Microseconds()) / 1000})
	})
}

func handleModels(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		models, err := d.ML.Models(r.Context())
		if err != nil {
			writeError(w, r, d.Log, mlError(err))
			return
		}
		if models == nil {
			models = []mlbridge.ModelInfo{}
		}
		encode(w, http.StatusOK, map[string]any{"models": models})
	})
}

func handleMLWorkers(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		workers := d.ML.Status()
		if workers == nil {
			workers = []mlbridge.WorkerStatus{}
		}
		encode(w, http.StatusOK, map[string]any{"workers": workers})
	})
}

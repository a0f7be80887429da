package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
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

// inputChecker is implemented by an ML that declares its models' input
// limits (mlbridge.AppView).
type inputChecker interface {
	CheckInput(model string, input json.RawMessage) error
}

// userSlots bounds each user's calls in flight; the others of that user
// wait (at most queue of them) in arrival order.
type userSlots struct {
	per, queue int
	mu         sync.Mutex
	users      map[string]*userSlot // guarded by mu
}

type userSlot struct {
	sem  chan struct{}
	refs int // holders and waiters; guarded by userSlots.mu
}

// acquire takes one of the user's slots, waiting for it; release must
// follow a nil error.
func (s *userSlots) acquire(ctx context.Context, user string) (release func(), err error) {
	s.mu.Lock()
	u := s.users[user]
	if u == nil {
		u = &userSlot{sem: make(chan struct{}, s.per)}
		s.users[user] = u
	}
	if u.refs >= s.per+s.queue {
		s.mu.Unlock()
		e := unhidra.Errorf(protocol.ErrRateLimited, "Too many of your inference calls are running or waiting.")
		e.RetryAfter = 1
		return nil, e
	}
	u.refs++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		if u.refs--; u.refs == 0 {
			delete(s.users, user)
		}
		s.mu.Unlock()
	}
	select {
	case u.sem <- struct{}{}:
		return func() { <-u.sem; done() }, nil
	case <-ctx.Done():
		done()
		return nil, unhidra.Errorf(protocol.ErrTimeout, "Gave up waiting for an inference slot.")
	}
}

// handleInfer runs a model for a signed-in user, rate-limited per user,
// with at most MLPerUser of the user's calls in flight, after checking the
// model's declared input limits.
func handleInfer(d Deps) http.Handler {
	rate := d.MLRate
	if rate == (ratelimit.Limit{}) {
		rate = ratelimit.Limit{Burst: 20, Every: 200 * time.Millisecond}
	}
	perUser := ratelimit.NewKeyed(rate, 0)
	per := d.MLPerUser
	if per <= 0 {
		per = 2
	}
	slots := &userSlots{per: per, queue: 2 * per, users: map[string]*userSlot{}}
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
		if ic, ok := d.ML.(inputChecker); ok && err == nil {
			err = ic.CheckInput(in.Model, in.Input)
		}
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		release, err := slots.acquire(r.Context(), u.ID)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		out, took, err := inferWith(r.Context(), d.ML, in, release)
		if err != nil {
			httpx.WriteError(w, r, d.Log, err)
			return
		}
		// Sent at once: the client has it before the access log runs.
		res := inferResponse{DurationMs: float64(took.Microseconds()) / 1000, Model: in.Model, Result: out}
		if err := httpx.JSONNow(w, http.StatusOK, res); err != nil { // the worker's result is checked JSON
			httpx.WriteError(w, r, d.Log, err)
		}
	})
}

// inferWith runs the call and then releases its slot (also on a panic):
// the slot bounds calls to the workers, not the writing of answers.
func inferWith(ctx context.Context, ml ML, in inferRequest, release func()) (json.RawMessage, time.Duration, error) {
	defer release()
	start := time.Now()
	out, err := ml.Infer(ctx, in.Model, in.Input)
	return out, time.Since(start), err
}

// inferResponse is the answer of POST /api/v1/ml/infer (the fields in the
// order of the map it replaced, so the bytes are the same).
type inferResponse struct {
	DurationMs float64         `json:"duration_ms"`
	Model      string          `json:"model"`
	Result     json.RawMessage `json:"result"`
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

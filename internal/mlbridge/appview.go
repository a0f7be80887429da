package mlbridge

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// AppView adapts a Supervisor to what the REST API needs of inference
// (api.ML): application errors, and lists that are never null.
type AppView struct{ S *Supervisor }

// Infer runs a model (see Supervisor.Infer).
func (v AppView) Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error) {
	out, err := v.S.Infer(ctx, model, input)
	return out, AppError(err)
}

// CheckInput applies the model's declared input limits before dispatch.
func (v AppView) CheckInput(model string, input json.RawMessage) error {
	return CheckInput(model, input)
}

// Models lists the workers' models; workers that speak only the protocol
// (no model listing) have none to list.
func (v AppView) Models(ctx context.Context) (any, error) {
	models, err := v.S.Models(ctx)
	if errors.Is(err, ErrUnsupported) {
		return []ModelInfo{}, nil
	}
	if err != nil {
		return nil, AppError(err)
	}
	if models == nil {
		models = []ModelInfo{}
	}
	return models, nil
}

// Workers returns the workers' status.
func (v AppView) Workers() any {
	workers := v.S.Status()
	if workers == nil {
		workers = []WorkerStatus{}
	}
	return workers
}

// AppError maps the bridge's errors to application errors with
// client-safe messages (the cause stays wrapped where it must be logged).
func AppError(err error) error {
	if err == nil {
		return nil
	}
	var me *ModelError
	switch {
	case errors.As(err, &me):
		return unhidra.Errorf(protocol.ErrUnprocessable, "%s", me.Message)
	case errors.Is(err, ErrSaturated):
		e := unhidra.Errorf(protocol.ErrUnavailable, "The inference workers are busy; retry shortly.")
		e.RetryAfter = 1
		return e
	case errors.Is(err, ErrClosed):
		return unhidra.Errorf(protocol.ErrUnavailable, "Inference is not available on this server.")
	case errors.Is(err, ErrTimeout):
		return unhidra.Errorf(protocol.ErrTimeout, "The model did not answer in time.")
	case errors.Is(err, ErrWorkerCrashed), errors.Is(err, ErrProtocol):
		return &unhidra.Error{Code: protocol.ErrUpstream, Message: "The inference worker failed; retry.", Err: err}
	case errors.Is(err, ErrInvalidInput):
		return unhidra.Errorf(protocol.ErrInvalid, "Invalid model name or input.")
	case errors.Is(err, ErrTooLarge):
		return unhidra.Errorf(protocol.ErrTooLarge, "The input is too large for the inference workers.")
	case errors.Is(err, ErrUnsupported):
		return unhidra.Errorf(protocol.ErrNotImplemented, "The inference worker does not support this.")
	}
	return err
}

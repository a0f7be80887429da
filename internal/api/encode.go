package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// MaxBodyBytes bounds every JSON request body.
const MaxBodyBytes = 64 << 10

// Validator is implemented by request types that check themselves.
type Validator interface {
	// Valid returns a client-safe description of what is wrong, or nil.
	Valid(ctx context.Context) error
}

// decode reads a JSON request body into a T: the content type must be
// application/json, the body at most MaxBodyBytes, unknown fields and
// trailing data are rejected.
func decode[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	return decodeLimit[T](w, r, MaxBodyBytes)
}

// decodeLimit is decode with another body limit.
func decodeLimit[T any](w http.ResponseWriter, r *http.Request, limit int64) (T, error) {
	var v T
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" || (params["charset"] != "" && params["charset"] != "utf-8" && params["charset"] != "UTF-8") {
		return v, unhidra.Errorf(protocol.ErrUnsupported, "Content-Type must be application/json.")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeError(err, limit)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			if de := decodeError(err, limit); unhidra.ErrorCode(de) == protocol.ErrTooLarge {
				return v, de
			}
		}
		return v, unhidra.Errorf(protocol.ErrInvalid, "Request body must hold a single JSON object.")
	}
	return v, nil
}

func decodeError(err error, limit int64) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return unhidra.Errorf(protocol.ErrTooLarge, "Request body is larger than %d bytes.", limit)
	case errors.As(err, &syntaxErr):
		return unhidra.Errorf(protocol.ErrInvalid, "Malformed JSON at byte %d.", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		return unhidra.Errorf(protocol.ErrInvalid, "Field %q has the wrong type.", typeErr.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return unhidra.Errorf(protocol.ErrInvalid, "Request body is empty or truncated.")
	}
	// Unknown fields and other decoder complaints carry no secrets.
	return unhidra.Errorf(protocol.ErrInvalid, "Invalid JSON: %s.", err.Error())
}

// decodeValid decodes and then validates.
func decodeValid[T Validator](w http.ResponseWriter, r *http.Request) (T, error) {
	v, err := decode[T](w, r)
	if err != nil {
		return v, err
	}
	return v, v.Valid(r.Context())
}

package mlbridge

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// HeaderSize is the size of a frame's big-endian length prefix.
const HeaderSize = 4

// DefaultMaxFrameBytes is the default cap on a frame body, as in the seed's
// worker.
const DefaultMaxFrameBytes = 10 << 20

// Control requests (sent with no model_id).
const (
	// HealthCheckData asks for liveness; a healthy worker's result contains "ok".
	HealthCheckData = "health_check"
	// ListModelsData asks for {"models":[{"name":…,"idempotent":…},…]}. It is
	// an Unhidra extension; foreign workers may not support it.
	ListModelsData = "list_models"
)

// Request is the wire form of a request frame.
type Request struct {
	Data      string `json:"data"`
	RequestID string `json:"request_id"`
	ModelID   string `json:"model_id,omitempty"`
}

// cancelRequest is the wire form of a cancel frame: the supervisor gave up
// on request RequestID. Only workers that advertise cancellable models get
// one (the SDK answers nothing and closes the connection); a protocol-only
// worker never sees it.
type cancelRequest struct {
	RequestID string `json:"request_id"`
	Cancel    bool   `json:"cancel"`
}

// Response is a decoded response frame.
type Response struct {
	Result    string `json:"result"`
	RequestID string `json:"request_id"`
	// ProcessingTimeMs is the worker's own timing; 0 when it sent none.
	ProcessingTimeMs int64  `json:"processing_time_ms,omitempty"`
	Error            string `json:"error,omitempty"`
}

// AppendFrame appends payload, framed, to dst.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// WriteFrame writes payload as one frame in a single Write call. It refuses
// empty payloads and payloads over maxBytes.
func WriteFrame(w io.Writer, payload []byte, maxBytes int) error {
	if len(payload) == 0 {
		return ErrEmptyFrame
	}
	if len(payload) > maxBytes || uint64(len(payload)) > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(payload), maxBytes)
	}
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderSize+len(payload)), payload))
	return err
}

// eagerAlloc is the largest body allocated before its bytes arrive; larger
// ones grow as data comes in, so a peer announcing a huge frame and sending
// nothing costs no memory.
const eagerAlloc = 64 << 10

// ReadFrame reads one frame and returns its body. It returns io.EOF when the
// stream ends cleanly before a frame, ErrEmptyFrame for a zero length,
// ErrFrameTooLarge (without reading the body) when the length exceeds
// maxBytes, and io.ErrUnexpectedEOF (wrapped) for a truncated frame. Other
// errors come from r unchanged.
func ReadFrame(r io.Reader, maxBytes int) ([]byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("truncated frame header: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	if uint64(n) > uint64(maxBytes) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, maxBytes)
	}
	if n <= eagerAlloc {
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, truncated(err)
		}
		return body, nil
	}
	var buf bytes.Buffer
	buf.Grow(eagerAlloc)
	got, err := buf.ReadFrom(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, truncated(err)
	}
	if got != int64(n) {
		return nil, truncated(io.EOF)
	}
	return buf.Bytes(), nil
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated frame body: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// wireResponse is decoded with pointers to tell missing fields from empty
// ones, and a float timing because some workers send fractional
// milliseconds.
type wireResponse struct {
	Result           *string  `json:"result"`
	RequestID        *string  `json:"request_id"`
	ProcessingTimeMs *float64 `json:"processing_time_ms"`
	Error            *string  `json:"error"`
}

// DecodeResponse parses a response body and checks it answers wantID. Any
// deviation is an ErrProtocol: not a JSON object, request_id missing or
// different, result neither a string nor absent-with-error.
func DecodeResponse(body []byte, wantID string) (Response, error) {
	var w wireResponse
	if err := json.Unmarshal(body, &w); err != nil {
		return Response{}, fmt.Errorf("%w: response is not a JSON object: %v", ErrProtocol, err)
	}
	if w.RequestID == nil {
		return Response{}, fmt.Errorf("%w: response without request_id", ErrProtocol)
	}
	if *w.RequestID != wantID {
		return Response{}, fmt.Errorf("%w: response for request %.64q, want %q", ErrProtocol, *w.RequestID, wantID)
	}
	r := Response{RequestID: wantID}
	if w.Error != nil {
		r.Error = *w.Error
	}
	switch {
	case w.Result != nil:
		r.Result = *w.Result
	case r.Error == "":
		return Response{}, fmt.Errorf("%w: response has neither result nor error", ErrProtocol)
	}
	if p := w.ProcessingTimeMs; p != nil && *p > 0 && *p < math.MaxInt64/2 {
		r.ProcessingTimeMs = int64(*p)
	}
	return r, nil
}

package mlbridge

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// conn is one connection to a worker, carrying one request at a time. Any
// failure leaves it broken: the caller closes it and never reuses it, so a
// late reply can never be read as the answer to a later request.
type conn struct {
	nc       net.Conn
	r        *bufio.Reader
	maxFrame int
	buf      []byte // request encoding buffer, reused

	broken  bool        // owned by the goroutine using the conn
	sent    bool        // the current request was written in full
	crashed atomic.Bool // set by the run loop before it closes a dead worker's conns
}

func newConn(nc net.Conn, maxFrame int) *conn {
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 4096), maxFrame: maxFrame}
}

func (c *conn) close() { c.nc.Close() }

// aLongTimeAgo is a deadline in the past: setting it wakes blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// call sends req and reads the matching response, within ctx. It returns
// the errors of this package (ErrTimeout, ErrWorkerCrashed, ErrProtocol) or
// the context's cancellation; on any error c is broken. When ctx ends while
// the worker computes and cancelFrame is true (the model is advertised as
// cancellable), a cancel frame for req is sent before the connection is
// given up; the caller closes the broken connection, which every worker
// sees, so the SDK stops the computation either way.
func (c *conn) call(ctx context.Context, req Request, cancelFrame bool) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, ctxErr(err, "before sending")
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("%w: encode request: %v", ErrInvalidInput, err)
	}
	if len(payload) > c.maxFrame {
		return Response{}, fmt.Errorf("%w: %d-byte request, limit %d", ErrTooLarge, len(payload), c.maxFrame)
	}
	deadline, _ := ctx.Deadline() // zero: none
	if err := c.nc.SetDeadline(deadline); err != nil {
		c.broken = true
		return Response{}, c.classify(ctx, err)
	}
	// Cancellation without a deadline: wake the blocked read.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.nc.SetDeadline(aLongTimeAgo)
		close(fired)
	})
	resp, err := c.exchange(payload, req.RequestID)
	if !stop() {
		c.broken = true // the deadline may have been moved to the past
		<-fired         // so that a cancel frame's deadline is not undone
	}
	if err != nil {
		c.broken = true
		if ctx.Err() != nil && c.sent && cancelFrame {
			c.sendCancel(req.RequestID)
		}
		return Response{}, c.classify(ctx, err)
	}
	return resp, nil
}

// cancelWriteTimeout bounds the best-effort write of a cancel frame.
const cancelWriteTimeout = 100 * time.Millisecond

// sendCancel tells the worker to stop request id. Best effort: the
// connection is closed right after, which the SDK also takes as a cancel.
func (c *conn) sendCancel(id string) {
	payload, err := json.Marshal(cancelRequest{RequestID: id, Cancel: true})
	if err != nil || c.nc.SetWriteDeadline(time.Now().Add(cancelWriteTimeout)) != nil {
		return
	}
	_, _ = c.nc.Write(AppendFrame(nil, payload))
}

func (c *conn) exchange(payload []byte, id string) (Response, error) {
	c.sent = false
	c.buf = AppendFrame(c.buf[:0], payload)
	if _, err := c.nc.Write(c.buf); err != nil {
		return Response{}, err
	}
	c.sent = true
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not pin a large buffer on an idle connection
	}
	body, err := ReadFrame(c.r, c.maxFrame)
	if err != nil {
		return Response{}, err
	}
	return DecodeResponse(body, id)
}

// classify turns an I/O or protocol error into this package's errors.
func (c *conn) classify(ctx context.Context, err error) error {
	if c.crashed.Load() {
		return fmt.Errorf("%w: the worker exited with the request in flight", ErrWorkerCrashed)
	}
	if ctx.Err() != nil {
		return ctxErr(ctx.Err(), "waiting for the worker")
	}
	switch {
	case errors.Is(err, ErrProtocol):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return timeoutErr("waiting for the worker")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%w: connection closed by the worker: %v", ErrWorkerCrashed, err)
	}
	return fmt.Errorf("%w: %w", ErrWorkerCrashed, err)
}

func ctxErr(err error, what string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return timeoutErr(what)
	}
	return fmt.Errorf("mlbridge: call canceled %s: %w", what, err)
}

// healthCheck sends a health check: healthy when the result contains "ok".
func (c *conn) healthCheck(ctx context.Context) error {
	resp, err := c.call(ctx, Request{Data: HealthCheckData, RequestID: newRequestID()}, false)
	if err != nil {
		return err
	}
	if resp.Error != "" || !strings.Contains(resp.Result, "ok") {
		return fmt.Errorf("mlbridge: unhealthy answer: result %.100q, error %.100q", resp.Result, resp.Error)
	}
	return nil
}

// Request ids: a random per-process prefix and a counter, unique across
// restarts of the server and of workers.
var (
	idPrefix  = randomPrefix()
	idCounter atomic.Uint64
)

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:]) + "-"
}

func newRequestID() string {
	return idPrefix + strconv.FormatUint(idCounter.Add(1), 36)
}

// ModelInfo describes a model the workers serve.
type ModelInfo struct {
	Name string `json:"name"`
	// Idempotent reports whether a call may safely run twice; such calls
	// are retried once on another worker after a crash.
	Idempotent bool `json:"idempotent"`
	// Cancellable reports that the worker stops a call of this model when
	// it receives a cancel frame; the supervisor sends one only then.
	Cancellable bool   `json:"cancellable,omitempty"`
	Description string `json:"description,omitempty"`
}

const maxModels = 1000

// parseModelList reads a list_models answer. Anything else (a foreign
// worker answering with its usual output) is ErrUnsupported.
func parseModelList(resp Response) ([]ModelInfo, error) {
	if resp.Error != "" {
		return nil, fmt.Errorf("%w: list_models: %.200s", ErrUnsupported, resp.Error)
	}
	var v struct {
		Models *[]ModelInfo `json:"models"`
	}
	if err := json.Unmarshal([]byte(resp.Result), &v); err != nil || v.Models == nil {
		return nil, fmt.Errorf("%w: list_models answered with something else", ErrUnsupported)
	}
	if len(*v.Models) > maxModels {
		return nil, fmt.Errorf("%w: %d models listed, limit %d", ErrProtocol, len(*v.Models), maxModels)
	}
	out := make([]ModelInfo, 0, len(*v.Models))
	for _, m := range *v.Models {
		if !modelNameRE.MatchString(m.Name) {
			return nil, fmt.Errorf("%w: invalid model name %.140q in the listing", ErrProtocol, m.Name)
		}
		if len(m.Description) > 1000 {
			m.Description = m.Description[:1000]
		}
		out = append(out, m)
	}
	return out, nil
}

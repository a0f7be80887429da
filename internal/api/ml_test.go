package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

// fakeML answers every model with its input; block makes Infer wait for
// its context instead (or for done), and report the context's end on
// canceled.
type fakeML struct {
	block    bool
	started  chan struct{}
	canceled chan error
	done     chan struct{}
}

func (f *fakeML) Infer(ctx context.Context, model string, input json.RawMessage) (json.RawMessage, error) {
	if !f.block {
		return input, nil
	}
	close(f.started)
	select {
	case <-ctx.Done():
		f.canceled <- ctx.Err()
		return nil, ctx.Err()
	case <-f.done: // the test is over
		return nil, errors.New("test over")
	}
}

func (f *fakeML) Models(context.Context) (any, error) { return []string{}, nil }
func (f *fakeML) Workers() any                        { return []string{} }

// newMLServer serves the API with ml and returns it with a user's token.
func newMLServer(tb testing.TB, ml api.ML) (*httptest.Server, string) {
	return newMLServerRate(tb, ml, ratelimit.Limit{})
}

func newMLServerRate(tb testing.TB, ml api.ML, rate ratelimit.Limit) (*httptest.Server, string) {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	hasher, err := auth.NewPasswordHasher(auth.PasswordHasherConfig{Params: auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		tb.Fatal(err)
	}
	ks, _ := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	accounts := auth.NewService(db, hasher, &auth.Tokens{Keys: ks}, auth.Limits{}, nil)
	srv := httptest.NewServer(api.NewServer(api.Deps{Accounts: accounts, Store: db, ML: ml, MLRate: rate}))
	tb.Cleanup(srv.Close)
	s, err := accounts.Register(context.Background(), "alice", "correct horse battery", "", auth.Request{IP: "127.0.0.1"})
	if err != nil {
		tb.Fatal(err)
	}
	return srv, s.AccessToken
}

func inferRequest(url, token, body string) *http.Request {
	req, _ := http.NewRequest("POST", url+"/api/v1/ml/infer", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// TestInfer_Answer: the answer carries the model, the result as the
// model's JSON and the call's duration, with its length (it is flushed
// before the handler returns, and must not be chunked).
func TestInfer_Answer(t *testing.T) {
	srv, token := newMLServer(t, &fakeML{})
	res, err := http.DefaultClient.Do(inferRequest(srv.URL, token, `{"model":"echo","input":{"msg":"<ping>","n":[1, 2]}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(res.Body)
	if res.StatusCode != 200 || res.ContentLength != int64(body.Len()) || len(res.TransferEncoding) != 0 {
		t.Fatalf("status %d, length %d for %d bytes, transfer encoding %v", res.StatusCode, res.ContentLength, body.Len(), res.TransferEncoding)
	}
	if ct, cc := res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"); ct != "application/json; charset=utf-8" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	// The same bytes as json.Encoder gave for the map it replaced:
	// sorted keys, compacted result, HTML characters escaped.
	var got struct {
		DurationMs *float64        `json:"duration_ms"`
		Model      string          `json:"model"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(body.Bytes(), &got); err != nil || got.DurationMs == nil {
		t.Fatalf("answer %q: %v", body.Bytes(), err)
	}
	var want bytes.Buffer
	json.NewEncoder(&want).Encode(map[string]any{"model": "echo", "result": json.RawMessage(`{"msg":"<ping>","n":[1, 2]}`), "duration_ms": *got.DurationMs})
	if body.String() != want.String() {
		t.Errorf("answer %q, want %q", body.Bytes(), want.Bytes())
	}
}

// TestInfer_ClientGoneCancelsCall: a client that closes its connection
// while its call runs cancels the call (net/http's background read of the
// connection, which starts once the body is read).
func TestInfer_ClientGoneCancelsCall(t *testing.T) {
	for _, size := range []int{0, 8 << 10} { // a body read at once, and one read in parts
		t.Run(fmt.Sprintf("padding=%d", size), func(t *testing.T) {
			ml := &fakeML{block: true, started: make(chan struct{}), canceled: make(chan error, 1), done: make(chan struct{})}
			srv, token := newMLServer(t, ml)
			t.Cleanup(func() { close(ml.done) }) // before the server closes: it waits for its handlers
			nc, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			body := `{"model":"slow","input":{"pad":"` + strings.Repeat("x", size) + `"}}`
			req := inferRequest(srv.URL, token, body)
			if err := req.Write(nc); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ml.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not start")
			}
			nc.Close()
			select {
			case err := <-ml.canceled:
				if err != context.Canceled {
					t.Fatalf("call ended with %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the call was not canceled when its client went away")
			}
		})
	}
}

// TestInfer_RefusedOrTruncated: no valid token, no call; a truncated body
// is reported as truncated.
func TestInfer_RefusedOrTruncated(t *testing.T) {
	srv, token := newMLServer(t, &fakeML{})
	res, err := http.DefaultClient.Do(inferRequest(srv.URL, "not-a-token", `{"model":"echo","input":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated: %d", res.StatusCode)
	}
	// A Content-Length larger than what is sent, then the write side closed.
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "POST /api/v1/ml/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: 100\r\n\r\n{\"model\":\"echo\",", token)
	nc.(*net.TCPConn).CloseWrite()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out.String(), "truncated") {
		t.Fatalf("truncated body: %d %s", resp.StatusCode, out.Bytes())
	}
}

// BenchmarkInfer is one inference request through the whole HTTP stack
// (middleware, token verification, decoding, the answer) to a model that
// answers at once: the server's own cost of an API call, without the worker.
func BenchmarkInfer(b *testing.B) {
	srv, token := newMLServerRate(b, &fakeML{}, ratelimit.Limit{Burst: 1 << 30, Every: time.Nanosecond})
	h := srv.Config.Handler
	body := []byte(`{"model":"echo","input":{"msg":"ping","n":1}}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/api/v1/ml/infer", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body.Bytes())
		}
	}
}

// BenchmarkInferServer is BenchmarkInfer over a kept-alive loopback
// connection to a real net/http server (a minimal client, so that the
// allocations are mostly the server's).
func BenchmarkInferServer(b *testing.B) {
	srv, token := newMLServerRate(b, &fakeML{}, ratelimit.Limit{Burst: 1 << 30, Every: time.Nanosecond})
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	body := `{"model":"echo","input":{"msg":"ping","n":1}}`
	req := []byte(fmt.Sprintf("POST /api/v1/ml/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", token, len(body), body))
	br := bufio.NewReader(nc)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		out.ReadFrom(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("%d %s", res.StatusCode, out.Bytes())
		}
	}
}

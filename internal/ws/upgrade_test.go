package ws_test

import (
	"bufio"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/ws"
)

func goodRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", testKey)
	return r
}

func TestCheckUpgrade(t *testing.T) {
	tests := []struct {
		name   string
		modify func(r *http.Request)
		status int // 0: accepted
	}{
		{"OK", func(*http.Request) {}, 0},
		{"OK token lists and case", func(r *http.Request) {
			r.Header.Set("Connection", "keep-alive, UPGRADE")
			r.Header.Set("Upgrade", "h2c, WebSocket")
		}, 0},
		{"OK connection split over two lines", func(r *http.Request) {
			r.Header["Connection"] = []string{"keep-alive", "Upgrade"}
		}, 0},
		{"ErrMethod", func(r *http.Request) { r.Method = http.MethodPost }, http.StatusMethodNotAllowed},
		{"ErrHTTP10", func(r *http.Request) { r.ProtoMajor, r.ProtoMinor = 1, 0 }, http.StatusBadRequest},
		{"ErrHTTP2", func(r *http.Request) { r.ProtoMajor, r.ProtoMinor = 2, 0 }, http.StatusBadRequest},
		{"ErrNoUpgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, http.StatusBadRequest},
		{"ErrUpgradeOther", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, http.StatusBadRequest},
		{"ErrNoConnectionUpgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, http.StatusBadRequest},
		{"ErrConnectionSubstring", func(r *http.Request) { r.Header.Set("Connection", "upgraded") }, http.StatusBadRequest},
		{"ErrVersion8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, http.StatusUpgradeRequired},
		{"ErrNoVersion", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, http.StatusUpgradeRequired},
		{"ErrTwoVersions", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Version", "13") }, http.StatusUpgradeRequired},
		{"ErrNoKey", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, http.StatusBadRequest},
		{"ErrKeyNotBase64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!==") }, http.StatusBadRequest},
		{"ErrKey15Bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA") }, http.StatusBadRequest},
		{"ErrKey17Bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=") }, http.StatusBadRequest},
		{"ErrTwoKeys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", testKey) }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodRequest()
			tt.modify(r)
			err := ws.CheckUpgrade(r)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var he *ws.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("got %v, want a *HandshakeError", err)
			}
			if he.Status != tt.status {
				t.Fatalf("status %d, want %d", he.Status, tt.status)
			}
		})
	}
}

func TestAcceptKey(t *testing.T) {
	// RFC 6455 §1.3's example.
	if got := ws.AcceptKey(testKey); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("got %q", got)
	}
}

func TestHandshakeError_Respond(t *testing.T) {
	w := httptest.NewRecorder()
	(&ws.HandshakeError{Status: http.StatusUpgradeRequired, Reason: "v"}).Respond(w)
	if w.Code != http.StatusUpgradeRequired || w.Header().Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("426 response: %d %v", w.Code, w.Header())
	}
}

// rawHTTP sends a raw request to the server and returns the response.
func rawHTTP(t *testing.T, ts *testServer, req string) *http.Response {
	t.Helper()
	nc := ts.dialRawConn(t)
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestUpgrade_Live(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := startServer(t, tr, ws.Config{}, func(ts *testServer) {
			ts.subprotocol = func(offered []string) string {
				if slices.Contains(offered, "unhidra.v1") {
					return "unhidra.v1"
				}
				return ""
			}
		})

		t.Run("RefuseWrongVersion", func(t *testing.T) {
			resp := rawHTTP(t, ts, strings.Replace(upgradeRequest(""), "Version: 13", "Version: 8", 1))
			if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatalf("got %d, version header %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Version"))
			}
		})
		t.Run("RefusePost", func(t *testing.T) {
			resp := rawHTTP(t, ts, strings.Replace(upgradeRequest(""), "GET", "POST", 1))
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("got %d", resp.StatusCode)
			}
		})
		t.Run("RefuseBadKey", func(t *testing.T) {
			resp := rawHTTP(t, ts, strings.Replace(upgradeRequest(""), testKey, "short", 1))
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %d", resp.StatusCode)
			}
		})
		t.Run("NoExtensionNoUnchosenProtocol", func(t *testing.T) {
			resp := rawHTTP(t, ts, upgradeRequest(
				"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"+
					"Sec-WebSocket-Protocol: bearer.SECRET-TOKEN\r\n"))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("got %d", resp.StatusCode)
			}
			if v := resp.Header.Values("Sec-WebSocket-Extensions"); len(v) != 0 {
				t.Fatalf("negotiated extensions %q", v)
			}
			if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) != 0 {
				t.Fatalf("echoed a protocol the server did not choose: %q", v)
			}
		})
		t.Run("ChosenProtocolOnly", func(t *testing.T) {
			c := ts.dial(t, &websocket.DialOptions{Subprotocols: []string{"bearer.SECRET", "unhidra.v1"}})
			if got := c.Subprotocol(); got != "unhidra.v1" {
				t.Fatalf("subprotocol %q", got)
			}
		})
	})
}

func TestUpgrade_RejectsUnsafeHeaders(t *testing.T) {
	for _, tc := range []struct {
		sub   string
		extra http.Header
	}{
		{"bad protocol", nil},
		{"", http.Header{"X-Evil": {"a\r\nSet-Cookie: x"}}},
		{"", http.Header{"Sec-WebSocket-Accept": {"forged"}}},
	} {
		w := httptest.NewRecorder()
		if _, _, err := ws.Upgrade(w, goodRequest(), tc.sub, tc.extra); err == nil {
			t.Fatalf("accepted subprotocol %q extra %v", tc.sub, tc.extra)
		}
		if w.Code != http.StatusInternalServerError {
			t.Fatalf("status %d", w.Code)
		}
	}
}

// FuzzCheckUpgrade feeds arbitrary header values: CheckUpgrade must not
// panic, and whenever it accepts, the request must really be a valid
// handshake by an independent reading of RFC 6455 §4.2.1.
func FuzzCheckUpgrade(f *testing.F) {
	f.Add("GET", "websocket", "Upgrade", "13", testKey)
	f.Add("GET", "WebSocket, h2c", "keep-alive, upgrade", "13", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("POST", "websocket", "Upgrade", "8", "x")
	f.Fuzz(func(t *testing.T, method, upgrade, connection, version, key string) {
		r := &http.Request{Method: method, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}}
		r.Header["Upgrade"] = []string{upgrade}
		r.Header["Connection"] = []string{connection}
		r.Header["Sec-Websocket-Version"] = []string{version}
		r.Header["Sec-Websocket-Key"] = []string{key}
		err := ws.CheckUpgrade(r)
		if err != nil {
			var he *ws.HandshakeError
			if !errors.As(err, &he) || (he.Status != 400 && he.Status != 405 && he.Status != 426) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if method != "GET" || strings.TrimSpace(version) != "13" {
			t.Fatalf("accepted method %q version %q", method, version)
		}
		hasToken := func(v, tok string) bool {
			for _, p := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(p), tok) {
					return true
				}
			}
			return false
		}
		if !hasToken(upgrade, "websocket") || !hasToken(connection, "upgrade") {
			t.Fatalf("accepted Upgrade %q Connection %q", upgrade, connection)
		}
		k := strings.TrimSpace(key)
		if len(k) != 24 || !strings.HasSuffix(k, "==") {
			t.Fatalf("accepted key %q", key)
		}
		// A valid key makes a valid accept value of 28 characters.
		if len(ws.AcceptKey(k)) != 28 {
			t.Fatal("bad accept value")
		}
	})
}

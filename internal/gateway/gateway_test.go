package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

func TestHandshake_AcceptedForms(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, user := s.newUser(t)
	cases := []struct {
		name         string
		subprotocols []string
		wantEcho     string
		wantKind     string
	}{
		{"unhidra.v1 + bearer.<JWT>", []string{protocol.Subprotocol, "bearer." + token}, protocol.Subprotocol, gateway.KindPerson},
		{"bearer, <JWT>", []string{"bearer", token}, "bearer", gateway.KindPerson},
		{"device key as the whole header", []string{testDeviceKey}, "", gateway.KindDevice},
		{"device key beside unhidra.v1", []string{testDeviceKey, protocol.Subprotocol}, protocol.Subprotocol, gateway.KindDevice},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := s.dial(t, c.subprotocols, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if echo := r.resp.Header.Get("Sec-WebSocket-Protocol"); echo != c.wantEcho {
				t.Fatalf("echoed %q, want %q", echo, c.wantEcho)
			}
			if strings.Contains(strings.Join(r.resp.Header.Values("Sec-WebSocket-Protocol"), ","), token) ||
				strings.Contains(strings.Join(r.resp.Header.Values("Sec-WebSocket-Protocol"), ","), testDeviceKey) {
				t.Fatal("the credential was echoed")
			}
			w := r.welcome
			if w.Identity.Kind != c.wantKind || w.Session == "" || w.Protocol != protocol.Subprotocol ||
				w.HeartbeatInterval != 60 || w.PingInterval != 1 || w.Limits.MaxFrameBytes != 64<<10 || w.ServerTime.IsZero() {
				t.Fatalf("welcome = %+v", w)
			}
			if c.wantKind == gateway.KindPerson && (w.Identity.ID != user.ID || w.TokenExpiresAt.IsZero()) {
				t.Fatalf("welcome identity = %+v", w.Identity)
			}
		})
	}
}

func TestHandshake_Refusals(t *testing.T) {
	s := newStack(t, gateway.Config{Admission: gateway.AdmissionLimits{AuthFailuresPerIP: ratelimit.Limit{Burst: 1000, Every: time.Millisecond}}})
	token, _ := s.newUser(t)
	other := &auth.Tokens{Keys: mustKeySet(t), Now: time.Now} // a key this server does not know
	forged, _, _ := other.Issue(&storeUser)
	expired := &auth.Tokens{Keys: s.tokens.Keys, Now: func() time.Time { return time.Now().Add(-time.Hour) }}
	old, _, _ := expired.Issue(&storeUser)
	cases := []struct {
		name   string
		path   string
		hdr    http.Header
		status int
	}{
		{"no credentials", "/ws", nil, 401},
		{"only unhidra.v1", "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1"), 401},
		{"garbage token", "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer.garbage"), 401},
		{"forged token", "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+forged), 401},
		{"expired token", "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+old), 401},
		{"tampered token", "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token[:len(token)-4]+"AAAA"), 401},
		{"bearer without token", "/ws", hdr("Sec-WebSocket-Protocol", "bearer"), 401},
		{"two tokens", "/ws", hdr("Sec-WebSocket-Protocol", "bearer."+token+", bearer."+token), 401},
		{"unknown device key", "/ws", hdr("Sec-WebSocket-Protocol", "unhidra_dk_nope_nope"), 401},
		{"non-token characters", "/ws", hdr("Sec-WebSocket-Protocol", "bearer.a/b"), 401},
		{"too many entries", "/ws", hdr("Sec-WebSocket-Protocol", "a,b,c,d,e,f,g,h,i"), 401},
		{"token in the query", "/ws?access_token=" + token, hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token), 400},
		{"key in the query", "/ws?key=" + testDeviceKey, nil, 400},
		{"cross-site origin", "/ws", hdrs("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token, "Origin", "https://evil.example"), 403},
		{"bad version", "/ws", hdrs("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token, "Sec-WebSocket-Version", "8"), 426},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, body := s.rawUpgrade(t, c.path, c.hdr)
			if res.StatusCode != c.status {
				t.Fatalf("status %d (%v), want %d", res.StatusCode, body, c.status)
			}
			e, _ := body["error"].(map[string]any)
			if e == nil || e["message"] == "" {
				t.Fatalf("refusal without a JSON error: %v", body)
			}
			if strings.Contains(e["message"].(string), token) {
				t.Fatal("refusal echoes the token")
			}
		})
	}
	// The same-site browser and non-browser clients are fine.
	if _, err := s.dial(t, []string{protocol.Subprotocol, "bearer." + token}, hdr("Origin", s.srv.URL)); err != nil {
		t.Fatalf("same-origin browser refused: %v", err)
	}
}

func TestHandshake_FailuresAreThrottled(t *testing.T) {
	s := newStack(t, gateway.Config{Admission: gateway.AdmissionLimits{
		AuthFailuresPerIP:  ratelimit.Limit{Burst: 3, Every: time.Hour},
		AuthAttemptsSlowed: ratelimit.Limit{Burst: 2, Every: time.Hour},
	}})
	token, _ := s.newUser(t)
	// Three failures slow the address; two more attempts are allowed
	// (they fail too), then the address is refused before checking.
	for i := range 5 {
		if res, _ := s.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", "unhidra_dk_bad"+strconv.Itoa(i)+"_key")); res.StatusCode != 401 {
			t.Fatalf("bad key %d: %d", i, res.StatusCode)
		}
	}
	res, _ := s.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token))
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("after repeated failures: %d, Retry-After %q; want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

// TestHandshake_BadKeysDoNotLockOutGoodOnes: 25 bad device keys from one
// address (a NAT), then a valid one from the same address connects
// (default limits). The same bad key retried is refused on its own.
func TestHandshake_BadKeysDoNotLockOutGoodOnes(t *testing.T) {
	s := newStack(t, gateway.Config{})
	for i := range 25 {
		bad := fmt.Sprintf("unhidra_dk_%016x_%064x", uint64(i+1)*0x9E3779B97F4A7C15, i)
		if res, _ := s.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", bad)); res.StatusCode != 401 {
			t.Fatalf("bad key %d: %d", i, res.StatusCode)
		}
	}
	revoked := fmt.Sprintf("unhidra_dk_%016x_%064x", 424242, 1)
	codes := ""
	for range 8 {
		res, _ := s.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", revoked))
		codes += strconv.Itoa(res.StatusCode) + " "
	}
	if codes != "401 401 401 401 401 429 429 429 " {
		t.Fatalf("one bad key retried: %s", codes)
	}
	if _, err := s.dial(t, []string{testDeviceKey, protocol.Subprotocol}, nil); err != nil {
		t.Fatalf("a valid device key after 25 bad ones from its address: %v", err)
	}
	token, _ := s.newUser(t)
	if _, err := s.dial(t, []string{protocol.Subprotocol, "bearer." + token}, nil); err != nil {
		t.Fatalf("a valid token after 25 bad keys from its address: %v", err)
	}
}

func TestAdmission_Caps(t *testing.T) {
	s := newStack(t, gateway.Config{Admission: gateway.AdmissionLimits{MaxConnsPerIdent: 2}})
	token, _ := s.newUser(t)
	a := s.mustDial(t, token)
	s.mustDial(t, token)
	res, _ := s.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token))
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third connection of one identity: %d", res.StatusCode)
	}
	// Closing one frees its slot.
	a.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool { return s.gw.Len() == 1 })
	s.mustDial(t, token)

	s2 := newStack(t, gateway.Config{Admission: gateway.AdmissionLimits{ConnRatePerIdent: ratelimit.Limit{Burst: 2, Every: time.Hour}}})
	tok2, _ := s2.newUser(t)
	for range 2 {
		r := s2.mustDial(t, tok2)
		r.conn.Close(websocket.StatusNormalClosure, "")
	}
	if res, _ := s2.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+tok2)); res.StatusCode != 429 {
		t.Fatalf("reconnect loop not slowed: %d", res.StatusCode)
	}
}

func TestRegistry_ListsLiveConnectionsOnly(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, user := s.newUser(t)
	r := s.mustDial(t, token)
	d, err := s.dial(t, []string{testDeviceKey}, http.Header{"User-Agent": {"esp32-firmware/1.0"}})
	if err != nil {
		t.Fatal(err)
	}
	writeJSON(t, r.conn, map[string]string{"type": "ping", "id": "p1"})
	if f, _ := readFrame(t, r.conn, 5*time.Second); f["type"] != "pong" || f["id"] != "p1" {
		t.Fatalf("pong = %v", f)
	}
	conns := s.gw.Connections()
	if len(conns) != 2 {
		t.Fatalf("%d connections listed", len(conns))
	}
	byKind := map[string]gateway.ConnInfo{}
	for _, c := range conns {
		byKind[c.Kind] = c
	}
	p := byKind[gateway.KindPerson]
	if p.IdentityID != user.ID || p.Session != r.welcome.Session || p.MessagesIn != 1 || p.BytesIn == 0 || p.BytesOut == 0 ||
		!strings.HasPrefix(p.RemoteAddr, "127.0.0.1:") || p.ConnectedAt.IsZero() {
		t.Fatalf("person entry = %+v", p)
	}
	if dv := byKind[gateway.KindDevice]; dv.UserAgent != "esp32-firmware/1.0" || dv.IdentityID != "dev_test" {
		t.Fatalf("device entry = %+v", dv)
	}
	d.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool { return len(s.gw.Connections()) == 1 })
	if s.gw.Connections()[0].Kind != gateway.KindPerson {
		t.Fatal("the wrong entry vanished")
	}
}

func TestFrames_Errors(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, _ := s.newUser(t)
	r := s.mustDial(t, token)
	ctx := context.Background()
	for _, bad := range []string{"not json", `[1,2]`, `{"id":"x"}`, `{"type":"send"`} {
		r.conn.Write(ctx, websocket.MessageText, []byte(bad))
		f, err := readFrame(t, r.conn, 5*time.Second)
		if err != nil || f["type"] != "error" || f["code"] != protocol.ErrBadFrame {
			t.Fatalf("%q → %v %v", bad, f, err)
		}
	}
	writeJSON(t, r.conn, map[string]string{"type": "no.such.type", "id": "q"})
	if f, _ := readFrame(t, r.conn, 5*time.Second); f["code"] != protocol.ErrUnknownType || f["id"] != "q" {
		t.Fatalf("unknown type → %v", f)
	}
	// Still open after all that.
	writeJSON(t, r.conn, map[string]string{"type": "ping", "id": "alive"})
	if f, _ := readFrame(t, r.conn, 5*time.Second); f["type"] != "pong" {
		t.Fatalf("connection unusable after errors: %v", f)
	}
}

func TestFrames_TooBigAndInvalidUTF8(t *testing.T) {
	s := newStack(t, gateway.Config{Transport: ws.Config{MaxMessageSize: 1024, PingInterval: time.Second, IdleTimeout: 5 * time.Second}})
	token, _ := s.newUser(t)
	r := s.mustDial(t, token)
	r.conn.Write(context.Background(), websocket.MessageText, bytes.Repeat([]byte("a"), 2048))
	if code := closeCode(t, r.conn, 5*time.Second); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversized frame closed with %d, want 1009", code)
	}
	// Invalid UTF-8 in a text frame, sent raw (libraries refuse to).
	raw := s.rawConn(t, "unhidra.v1, bearer."+token)
	raw.Write(maskedFrame(0x81, []byte{'{', 0xff, '}'}))
	if code := readCloseCode(t, raw); code != protocol.CloseInvalidUTF8 {
		t.Fatalf("invalid UTF-8 closed with %d, want 1007", code)
	}
}

func TestFrames_RateLimitThenClose(t *testing.T) {
	s := newStack(t, gateway.Config{MessageRate: ratelimit.Limit{Burst: 5, Every: time.Hour}, AbuseTolerance: 3})
	token, _ := s.newUser(t)
	r := s.mustDial(t, token)
	for i := range 5 {
		writeJSON(t, r.conn, map[string]string{"type": "ping", "id": string(rune('a' + i))})
		if f, _ := readFrame(t, r.conn, 5*time.Second); f["type"] != "pong" {
			t.Fatalf("frame %d within the burst refused: %v", i, f)
		}
	}
	writeJSON(t, r.conn, map[string]string{"type": "ping"})
	if f, _ := readFrame(t, r.conn, 5*time.Second); f["code"] != protocol.ErrRateLimited || f["retry_after"] == nil {
		t.Fatalf("over the limit: %v", f)
	}
	// Persistent flooding ends the connection with the rate-limit code.
	ctx := context.Background()
	for range 10 {
		if err := r.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			break
		}
	}
	if code := closeCode(t, r.conn, 5*time.Second); code != protocol.CloseRateLimited {
		t.Fatalf("flooder closed with %d, want %d", code, protocol.CloseRateLimited)
	}
}

func TestSlowConsumerIsolation(t *testing.T) {
	// Write deadline and keepalive far away: on a loaded machine either
	// could otherwise end the slow client first, and this test is about the
	// queue bound.
	s := newStack(t, gateway.Config{Transport: ws.Config{MaxQueueBytes: 64 << 10, PingInterval: 10 * time.Minute, IdleTimeout: 20 * time.Minute, WriteTimeout: 10 * time.Minute, StallTimeout: -1},
		Admission: gateway.AdmissionLimits{MaxConnsPerIdent: 200, ConnRatePerIdent: ratelimit.Limit{Burst: 200, Every: time.Millisecond}}})
	token, _ := s.newUser(t)
	subscribe := func(c *websocket.Conn) {
		writeJSON(t, c, map[string]string{"type": "test.subscribe", "id": "s", "channel": "t"})
		if f, _ := readFrame(t, c, 5*time.Second); f["type"] != "ack" {
			t.Fatalf("subscribe: %v", f)
		}
	}
	// The slow client has a tiny kernel receive buffer and never reads
	// after subscribing, so the server's queue for it must fill.
	slow := s.dialSmallBuffer(t, token)
	subscribe(slow)
	const readers, messages = 100, 400
	fast := make([]*dialResult, readers)
	for i := range fast {
		fast[i] = s.mustDial(t, token)
		subscribe(fast[i].conn)
	}
	var wg sync.WaitGroup
	counts := make([]atomic.Int64, readers)
	for i, r := range fast {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for counts[i].Load() < messages {
				if _, err := readFrame(t, r.conn, 30*time.Second); err != nil {
					return
				}
				counts[i].Add(1)
			}
		}()
	}
	// Publish at the pace of the readers (they keep up, as live clients
	// do); the slow one must not hold anyone back.
	payload := []byte(`{"type":"message","body":"` + strings.Repeat("x", 8000) + `"}`)
	for sent := 1; sent <= messages; sent++ {
		s.gw.Hub().Publish("t", ws.NewPreparedMessage(true, payload))
		if sent%5 == 0 { // 5 × 8 KB stays inside a reader's 64 KiB queue
			waitFor(t, func() bool {
				for i := range counts {
					if counts[i].Load() < int64(sent) {
						return false
					}
				}
				return true
			})
		}
	}
	wg.Wait()
	for i := range counts {
		if n := counts[i].Load(); n != messages {
			t.Fatalf("reader %d got %d of %d messages", i, n, messages)
		}
	}
	// 400 × 8 KB (3.2 MB) is far beyond the slow client's 64 KiB queue plus its
	// small socket buffers: it was disconnected with the reconnectable
	// slow-consumer code, and nobody else was.
	if n := s.gw.Hub().Overflows(); n != 1 {
		t.Fatalf("%d queue overflows, want exactly 1 (the slow client)", n)
	}
	if code := closeCode(t, slow, 30*time.Second); code != protocol.CloseSlowConsumer {
		t.Fatalf("slow consumer closed with %d, want %d", code, protocol.CloseSlowConsumer)
	}
}

func TestKeepalive_SilentPeerIsClosed(t *testing.T) {
	s := newStack(t, gateway.Config{Transport: ws.Config{PingInterval: 100 * time.Millisecond, IdleTimeout: 400 * time.Millisecond}})
	token, _ := s.newUser(t)
	raw := s.rawConn(t, "unhidra.v1, bearer."+token)
	// Never answer the server's pings: read and discard until the socket dies.
	sawPing := false
	var all []byte
	buf := make([]byte, 4096)
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := raw.Read(buf)
		if err != nil {
			break
		}
		all = append(all, buf[:n]...)
		if bytes.Contains(buf[:n], []byte{0x89}) { // FIN + ping opcode
			sawPing = true
		}
	}
	if !sawPing {
		t.Fatal("the server never pinged")
	}
	// The idle timeout is announced: a close frame with 4003 before the
	// socket closes.
	idleClose := append([]byte{0x88, byte(2 + len("idle timeout")), 4003 >> 8, 4003 & 0xff}, "idle timeout"...)
	if !bytes.HasSuffix(all, idleClose) {
		t.Fatalf("the stream does not end with a 4003 close frame: % x", all[max(0, len(all)-20):])
	}
	waitFor(t, func() bool { return s.gw.Len() == 0 })
	if got := counterValue(t, s.gw.Metrics(), "unhidra_gateway_ping_timeouts_total"); got != 1 {
		t.Fatalf("ping timeouts counted: %v", got)
	}
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	s := newStack(t, gateway.Config{})
	s.tokens.TTL = 2 * time.Second
	token, _ := s.newUser(t)
	r := s.mustDial(t, token)
	// A refresh with someone else's token is refused, the connection stays.
	otherTok, _ := s.newUser(t)
	writeJSON(t, r.conn, map[string]string{"type": "refresh", "id": "r0", "token": otherTok})
	if f, _ := readFrame(t, r.conn, 5*time.Second); f["code"] != protocol.ErrForbidden {
		t.Fatalf("foreign refresh: %v", f)
	}
	if code := closeCode(t, r.conn, 15*time.Second); code != protocol.CloseTokenExpired {
		t.Fatalf("expired session closed with %d, want %d", code, protocol.CloseTokenExpired)
	}
}

func TestDisablingAUserClosesTheirConnections(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, user := s.newUser(t)
	r := s.mustDial(t, token)
	if _, err := s.accounts.SetDisabled(context.Background(), nil, user.ID, true, auth.Request{}); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, r.conn, 5*time.Second); code != protocol.CloseRevoked {
		t.Fatalf("disabled user's connection closed with %d, want %d", code, protocol.CloseRevoked)
	}
}

func TestDrain(t *testing.T) {
	s := newStack(t, gateway.Config{DrainWindow: 300 * time.Millisecond,
		Admission: gateway.AdmissionLimits{MaxConnsPerIdent: 100, ConnRatePerIdent: ratelimit.Limit{Burst: 100, Every: time.Millisecond}}})
	token, _ := s.newUser(t)
	conns := make([]*dialResult, 20)
	for i := range conns {
		conns[i] = s.mustDial(t, token)
	}
	codes := make(chan websocket.StatusCode, len(conns))
	for _, r := range conns {
		go func() { codes <- closeCode(t, r.conn, 20*time.Second) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.gw.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	for range conns {
		if code := <-codes; code != protocol.CloseShutdown {
			t.Fatalf("drained with %d, want %d", code, protocol.CloseShutdown)
		}
	}
	res, _ := s.rawUpgrade(t, "/ws", hdr("Sec-WebSocket-Protocol", "unhidra.v1, bearer."+token))
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("upgrade while draining: %d", res.StatusCode)
	}
}

func TestAdminConnectionsAPI(t *testing.T) {
	s := newStack(t, gateway.Config{})
	admin, err := s.accounts.CreateUser(context.Background(), nil, "root", "correct horse battery", "admin", auth.Request{})
	if err != nil {
		t.Fatal(err)
	}
	adminTok, _, _ := s.tokens.Issue(admin)
	token, _ := s.newUser(t)
	r := s.mustDial(t, token)
	req, _ := http.NewRequest("GET", s.srv.URL+"/api/v1/admin/connections", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	res, err := s.srv.Client().Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("list: %v %v", err, res.Status)
	}
	res.Body.Close()
	req.Header.Set("Authorization", "Bearer "+token)
	res, err = s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Fatalf("non-admin listing: %d", res.StatusCode)
	}
	del, _ := http.NewRequest("DELETE", s.srv.URL+"/api/v1/admin/connections/"+r.welcome.Session, nil)
	del.Header.Set("Authorization", "Bearer "+adminTok)
	res, err = s.srv.Client().Do(del)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 {
		t.Fatalf("kick: %d", res.StatusCode)
	}
	if code := closeCode(t, r.conn, 5*time.Second); code != protocol.CloseKicked {
		t.Fatalf("kicked with %d", code)
	}
}

// TestFrames_PingFloodIsClosed: empty WebSocket pings count toward the
// frame rate like messages; a flood of them is closed with 4004 within
// 2 s (default limits).
func TestFrames_PingFloodIsClosed(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, _ := s.newUser(t)
	conn := s.rawConn(t, "unhidra.v1, bearer."+token)
	ping := bytes.Repeat(maskedFrame(0x89, nil), 256)
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(ping); err != nil {
				return
			}
		}
	}()
	code := readCloseCode(t, conn)
	elapsed := time.Since(start)
	close(stop)
	conn.Close()
	<-done
	if code != protocol.CloseRateLimited || elapsed > 2*time.Second {
		t.Fatalf("ping flood: close %d after %v, want %d within 2s", code, elapsed, protocol.CloseRateLimited)
	}
	t.Logf("ping flood closed with %d after %v", code, elapsed)
}

// metricValue gathers the gateway's metrics and returns the value of name
// with the given reason label (0 if absent).
func metricValue(t *testing.T, s *stack, name, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.gw.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestDirectSendOverflowClosesWith4001: a frame sent directly to one
// connection (not a fan-out) that does not fit its queue is not dropped
// quietly: the connection is closed with 4001 and the drop is counted.
func TestDirectSendOverflowClosesWith4001(t *testing.T) {
	s := newStack(t, gateway.Config{Transport: ws.Config{MaxQueueBytes: 64 << 10, PingInterval: 10 * time.Minute, IdleTimeout: 20 * time.Minute, WriteTimeout: 10 * time.Minute}})
	var results []error
	var mu sync.Mutex
	s.gw.Handle("test.flood", func(ctx context.Context, c *gateway.Client, e *protocol.Envelope) error {
		big := strings.Repeat("x", 8000)
		for i := range 400 { // 3.2 MB: far past the queue and the socket buffers
			err := c.SendJSON(map[string]any{"type": "test.flood", "i": i, "body": big})
			mu.Lock()
			results = append(results, err)
			mu.Unlock()
			if err != nil {
				break
			}
		}
		return nil
	})
	token, _ := s.newUser(t)
	slow := s.dialSmallBuffer(t, token)
	other := s.mustDial(t, token)
	writeJSON(t, slow, map[string]string{"type": "test.flood", "id": "f"})
	if code := closeCode(t, slow, 30*time.Second); code != protocol.CloseSlowConsumer {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseSlowConsumer)
	}
	mu.Lock()
	last := results[len(results)-1]
	mu.Unlock()
	if !errors.Is(last, ws.ErrQueueFull) {
		t.Fatalf("the flood ended with %v, want the queue-full error", last)
	}
	waitFor(t, func() bool { return metricValue(t, s, "unhidra_gateway_drops_total", "queue_full") == 1 })
	waitFor(t, func() bool { return metricValue(t, s, "unhidra_gateway_closes_total", "slow_consumer") == 1 })
	// The other connection of the same identity is untouched.
	writeJSON(t, other.conn, map[string]string{"type": "ping", "id": "p"})
	if f, err := readFrame(t, other.conn, 5*time.Second); err != nil || f["type"] != "pong" {
		t.Fatalf("other connection: %v %v", f, err)
	}
}

// labeledCounter returns the value of a counter vector's child.
func labeledCounter(t *testing.T, c prometheus.Collector, name, label, value string) float64 {
	t.Helper()
	return sumCounters(t, c, name, func(pb *dto.Metric) bool {
		for _, lp := range pb.Label {
			if lp.GetName() == label && lp.GetValue() == value {
				return true
			}
		}
		return false
	})
}

// Traffic counters are live: a connection that is still open shows in
// them at scrape time, in both directions; closes are counted by reason.
func TestMetrics_LiveTrafficAndCloseReasons(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, _ := s.newUser(t)
	c := s.mustDial(t, token)
	for i := range 3 {
		writeJSON(t, c.conn, map[string]any{"type": protocol.TypePing, "id": fmt.Sprint("p", i)})
		if _, err := readFrame(t, c.conn, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	m := s.gw.Metrics()
	// A frame is counted once its write returns, which on loopback can be
	// after the client has read it: wait for both directions.
	waitFor(t, func() bool {
		return counterValue(t, m, "unhidra_gateway_frames_received_total") >= 3 &&
			counterValue(t, m, "unhidra_gateway_frames_sent_total") >= 4
	})
	in, out := counterValue(t, m, "unhidra_gateway_frames_received_total"), counterValue(t, m, "unhidra_gateway_frames_sent_total")
	bin, bout := counterValue(t, m, "unhidra_gateway_received_bytes_total"), counterValue(t, m, "unhidra_gateway_sent_bytes_total")
	if in != 3 || out < 4 || bin <= 0 || bout <= 0 { // welcome + 3 pongs
		t.Fatalf("live traffic: frames in %v out %v, bytes in %v out %v", in, out, bin, bout)
	}
	// Every frame went out in some write; a write carries one frame or more.
	if w := counterValue(t, m, "unhidra_gateway_socket_writes_total"); w < 1 || w > out {
		t.Fatalf("socket writes %v for %v frames sent", w, out)
	}
	if s.gw.Len() != 1 {
		t.Fatal("the connection is not live any more")
	}
	// An administrator's kick is counted as "kicked", and the counters
	// keep what the connection carried.
	sess := s.gw.Connections()[0].Session
	if !s.gw.CloseSession(sess, protocol.CloseKicked) {
		t.Fatal("no such session")
	}
	if code := closeCode(t, c.conn, 10*time.Second); int(code) != protocol.CloseKicked {
		t.Fatalf("closed with %d", code)
	}
	waitFor(t, func() bool { return labeledCounter(t, m, "unhidra_gateway_closes_total", "reason", "kicked") == 1 })
	if got := counterValue(t, m, "unhidra_gateway_frames_received_total"); got < in {
		t.Fatalf("frames received went back from %v to %v", in, got)
	}
	// A client's own close is "client".
	c2 := s.mustDial(t, token)
	c2.conn.Close(websocket.StatusNormalClosure, "bye")
	waitFor(t, func() bool { return labeledCounter(t, m, "unhidra_gateway_closes_total", "reason", "client") == 1 })
}

// The queued-frames gauge shows what waits for a connection that does not
// read, and falls back to zero once the connection is gone.
func TestMetrics_QueuedFrames(t *testing.T) {
	s := newStack(t, gateway.Config{})
	token, user := s.newUser(t)
	slow := s.dialSmallBuffer(t, token)
	m := s.gw.Metrics()
	// The welcome may still be counted as queued for a moment after the
	// client read it (the counters settle once the write returned): wait
	// for the gauge to reach 0 at rest.
	waitFor(t, func() bool { return gaugeValue(t, m, "unhidra_gateway_queued_frames") == 0 })
	const size = 16 << 10
	frame := ws.NewPreparedMessage(true, []byte(`{"type":"test.big","body":"`+strings.Repeat("x", size)+`"}`))
	// 512 KiB: more than both socket buffers take, less than the queue's bound.
	for range 32 {
		if n := s.gw.Hub().SendTo(user.ID, frame); n != 1 {
			t.Fatalf("sent to %d connections", n)
		}
	}
	waitFor(t, func() bool {
		return gaugeValue(t, m, "unhidra_gateway_queued_frames") >= 2 && gaugeValue(t, m, "unhidra_gateway_queued_bytes") >= 2*size
	})
	slow.CloseNow()
	waitFor(t, func() bool {
		return s.gw.Len() == 0 && gaugeValue(t, m, "unhidra_gateway_queued_frames") == 0 &&
			gaugeValue(t, m, "unhidra_gateway_queued_bytes") == 0
	})
}

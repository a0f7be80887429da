package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/ws"
)

// TestFloor_ConnectSubscribePublish runs the protocol subset wsload's
// centrifugo target speaks against the broadcaster.
func TestFloor_ConnectSubscribePublish(t *testing.T) {
	eng, err := ws.NewEngine(ws.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(newMux(eng, &broadcaster{conns: map[*ws.Conn]struct{}{}}))
	srv.Listener.Close()
	srv.Listener = ws.WrapListener(ln)
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/connection/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	roundTrip := func(send, want string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(send)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(got), want) {
			t.Fatalf("after %s: %q, %v; want %s", send, got, err, want)
		}
	}
	roundTrip(`{"id":1,"connect":{}}`, `{"id":1,"connect":`)
	roundTrip(`{"id":2,"subscribe":{"channel":"bench:fanout"}}`, `{"id":2,"subscribe":{}}`)
	res, err := http.Post(srv.URL+"/api/publish", "application/json", strings.NewReader(`{"channel":"bench:fanout","data":{"t":1,"s":2}}`))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("publish: %v %v", res, err)
	}
	res.Body.Close()
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != `{"push":{"channel":"bench:fanout","pub":{"data":{"t":1,"s":2}}}}` {
		t.Fatalf("push %q, %v", got, err)
	}
	if res, _ := http.Post(srv.URL+"/api/publish", "application/json", strings.NewReader(`nonsense`)); res == nil || res.StatusCode != 400 {
		t.Fatalf("bad publish: %v", res)
	}
}

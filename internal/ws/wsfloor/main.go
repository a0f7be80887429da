// Command wsfloor is the fan-out floor of this machine: a minimal broadcaster
// on the same WebSocket engine as the server (internal/ws, epoll, prepared
// frames), with no authentication, no storage, no sequencing and no
// presence. It speaks the subset of Centrifugo's client protocol that the
// wsload tool's "centrifugo" target uses (connect and subscribe replies,
// publications pushed as {"push":{"channel":…,"pub":{"data":…}}}, publishing
// with POST /api/publish), so the same load tool and flags measure it and
// the server: what the server adds on top of this is its own cost.
//
//	go build -o wsfloor ./internal/ws/wsfloor && ./wsfloor -listen 127.0.0.1:8000
//	wsload -target centrifugo -addr 127.0.0.1:8000 -mode fanout -n 2000 -rate 10 …
//
// Loopback only; for benchmarks, never for service.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/unhidra/unhidra/internal/ws"
)

// broadcaster holds the subscribed connections.
type broadcaster struct {
	mu    sync.RWMutex
	conns map[*ws.Conn]struct{}
}

func (b *broadcaster) OnOpen(*ws.Conn) {}

// OnMessage answers the two commands wsload's centrifugo target sends.
func (b *broadcaster) OnMessage(c *ws.Conn, _ bool, data []byte) {
	var cmd struct {
		ID        uint32          `json:"id"`
		Connect   json.RawMessage `json:"connect"`
		Subscribe json.RawMessage `json:"subscribe"`
	}
	if json.Unmarshal(data, &cmd) != nil {
		return // "{}" pongs and anything else
	}
	switch {
	case cmd.Connect != nil:
		c.SendText(fmt.Appendf(nil, `{"id":%d,"connect":{"client":"floor","ping":25,"pong":true}}`, cmd.ID))
	case cmd.Subscribe != nil:
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		c.SendText(fmt.Appendf(nil, `{"id":%d,"subscribe":{}}`, cmd.ID))
	}
}

func (b *broadcaster) OnClose(c *ws.Conn, _ error) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

// publish frames the publication once and queues it on every connection,
// as the server's hub does.
func (b *broadcaster) publish(channel, data []byte) {
	var f bytes.Buffer
	f.WriteString(`{"push":{"channel":`)
	f.Write(channel)
	f.WriteString(`,"pub":{"data":`)
	f.Write(data)
	f.WriteString(`}}}`)
	pm := ws.NewPreparedMessage(true, f.Bytes())
	b.mu.RLock()
	defer b.mu.RUnlock()
	for c := range b.conns {
		c.SendPrepared(pm)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "loopback address to listen on")
	flag.Parse()
	if host, _, err := net.SplitHostPort(*listen); err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintln(os.Stderr, "wsfloor: -listen must be a loopback HOST:PORT")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := ws.NewEngine(ws.Config{}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsfloor:", err)
		os.Exit(1)
	}
	mux := newMux(eng, &broadcaster{conns: map[*ws.Conn]struct{}{}})
	tcp, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsfloor:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", tcp.Addr())
	if err := http.Serve(ws.WrapListener(tcp), mux); err != nil {
		fmt.Fprintln(os.Stderr, "wsfloor:", err)
		os.Exit(1)
	}
}

// newMux serves the WebSocket endpoint and the publish API.
func newMux(eng *ws.Engine, b *broadcaster) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connection/websocket", func(w http.ResponseWriter, r *http.Request) {
		// As the server's gateway does: the 101 goes out with whatever
		// OnOpen sends, and this goroutine opens the connection.
		conn, buffered, response, err := ws.UpgradeDeferred(w, r, "", nil)
		if err != nil {
			return
		}
		c, err := eng.AdoptUpgraded(conn, buffered, response, b, nil)
		if err != nil {
			return // AdoptUpgraded closed conn
		}
		c.Run()
	})
	mux.HandleFunc("POST /api/publish", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Channel json.RawMessage `json:"channel"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil || in.Data == nil {
			http.Error(w, `{"error":{"code":400}}`, http.StatusBadRequest)
			return
		}
		b.publish(in.Channel, in.Data)
		w.Write([]byte(`{"result":{}}`))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	return mux
}

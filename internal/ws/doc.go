// Package ws is Unhidra's server-side WebSocket transport (RFC 6455): the
// opening handshake, an incremental frame codec, and an Engine that serves
// many mostly idle connections with no goroutine and no buffer per idle
// connection (on Linux: its own epoll instance, short-lived reader
// goroutines, a few flusher goroutines that write plain sockets, coalescing
// the frames queued meanwhile into one writev, and a writer goroutine only
// while a TLS connection has something to send or a socket is full).
//
// A server wraps its listener, upgrades in its handler and hands the
// connection to the Engine:
//
//	engine, err := ws.NewEngine(ws.Config{}, logger)
//	...
//	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
//		if err := ws.CheckUpgrade(r); err != nil {
//			err.(*ws.HandshakeError).Respond(w)
//			return
//		}
//		// authenticate, choose the subprotocol to echo ...
//		conn, buffered, err := ws.Upgrade(w, r, "unhidra.v1", nil)
//		if err != nil {
//			return // Upgrade has answered
//		}
//		engine.Serve(conn, buffered, handler, session)
//	})
//	srv.Serve(tls.NewListener(ws.WrapListener(tcpListener), tlsConfig))
//
// The Handler's methods run on Engine goroutines, never concurrently for one
// connection: OnOpen, then OnMessage for each complete data message, then
// OnClose exactly once with a *CloseError. Conn's send and close methods never
// block and may be called from anywhere; a full outbound queue is reported
// (ErrQueueFull), not acted upon.
//
// See docs/ws-transport.md for the design and the reasons behind it.
package ws

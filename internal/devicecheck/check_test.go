package devicecheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A device that sends a frame over 64 KiB fails the limits rule (the probe
// sees a read error, not a frame, so this is judged apart from inspect).
func TestProbe_OversizeFrameFailsLimits(t *testing.T) {
	p, err := Start(Config{Listen: "127.0.0.1:0", HeartbeatInterval: 200 * time.Millisecond,
		BackoffInitial: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reports := make(chan *Report, 1)
	go func() { reports <- p.Run(ctx) }()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.CertPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	ws, _, err := websocket.Dial(ctx, p.URL, &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{p.Key}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // the welcome
		t.Fatal(err)
	}
	big := `{"type":"heartbeat","pad":"` + strings.Repeat("a", 65<<10) + `"}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	// The probe closes the connection (1009), then waits for a reconnect
	// that never comes and ends the run.
	rep := <-reports
	var limits *Rule
	for i := range rep.Rules {
		if rep.Rules[i].Name == "limits" {
			limits = &rep.Rules[i]
		}
	}
	if limits == nil || limits.Result != Fail || rep.Passed {
		t.Fatalf("limits = %+v, passed %v", limits, rep.Passed)
	}
}

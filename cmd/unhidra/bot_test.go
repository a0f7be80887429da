package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
)

// newTestClient signs in to s as name and keeps a connection up.
func newTestClient(t *testing.T, s *server, dataDir, name, password string) *client.Client {
	t.Helper()
	var tlsCfg *tls.Config
	if strings.HasPrefix(s.url, "https://") {
		pemBytes, err := os.ReadFile(filepath.Join(dataDir, "tls-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		tlsCfg = &tls.Config{RootCAs: pool}
	}
	c, err := client.New(client.Config{BaseURL: s.url, TLS: tlsCfg, Name: name, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	stop := sync.OnceFunc(func() { cancel(); <-done; c.Close() })
	clientStops.Store(c, stop)
	t.Cleanup(func() { stop(); clientStops.Delete(c) })
	if err := c.Login(ctx); err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	go func() { defer close(done); c.Run(ctx) }()
	select {
	case <-c.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("client did not connect")
	}
	return c
}

// clientStops holds each test client's stop function.
var clientStops sync.Map

// stopClient disconnects a test client now (its Run returns).
func stopClient(t *testing.T, c *client.Client) {
	t.Helper()
	stop, ok := clientStops.Load(c)
	if !ok {
		t.Fatal("not a test client")
	}
	stop.(func())()
}

// waitMessage returns the next message event matching pred.
func waitMessage(t *testing.T, c *client.Client, pred func(*client.Message) bool) *client.Message {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Message != nil && pred(e.Message) {
				return e.Message
			}
		case <-deadline:
			t.Fatal("expected message did not arrive")
		}
	}
}

func TestSystemBot(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"UNHIDRA_ADMIN_PASSWORD": "correct horse battery"}
	s := startServer(t, dir, env, "--system-bot=true", "--ml-workers", "1")
	for _, n := range []string{"ann", "ben"} {
		if st, body := s.post(t, "/api/v1/auth/register", "", map[string]string{"name": n, "password": "correct horse battery"}); st != 201 {
			t.Fatalf("register %s: %d %v", n, st, body)
		}
	}
	ann := newTestClient(t, s, dir, "ann", "correct horse battery")
	ctx := context.Background()
	chans, err := ann.Channels(ctx)
	if err != nil || len(chans) == 0 {
		t.Fatalf("channels: %v %v", chans, err)
	}
	general := chans[0].ID
	fromBot := func(substr string) func(*client.Message) bool {
		return func(m *client.Message) bool {
			return m.Channel == general && m.From != ann.User().ID && strings.Contains(m.Body, substr)
		}
	}
	for _, line := range []string{"The deploy of version two went out this morning and the database migration finished cleanly.",
		"Latency on the API dropped after the deploy, and the error rate is back to normal.",
		"Tomorrow we will look at the device firmware rollout and the new heartbeat dashboard."} {
		if _, err := ann.Send(ctx, general, line); err != nil {
			t.Fatal(err)
		}
	}
	ann.Send(ctx, general, "/ping")
	waitMessage(t, ann, fromBot("pong"))
	ann.Send(ctx, general, "/help")
	waitMessage(t, ann, fromBot("/summary"))
	ann.Send(ctx, general, "/who")
	who := waitMessage(t, ann, fromBot("members"))
	if !strings.Contains(who.Body, "Online:") {
		t.Fatalf("/who: %q", who.Body)
	}
	ann.Send(ctx, general, "/summary")
	sum := waitMessage(t, ann, fromBot("Summary of the last"))
	if !strings.Contains(sum.Body, "deploy") {
		t.Fatalf("summary misses the main topic: %q", sum.Body)
	}

	// A channel the bot is invited to gets join announcements.
	var ch client.Channel
	if err := ann.Post(ctx, "/api/v1/channels", map[string]any{"name": "ops", "private": false}, &ch); err != nil {
		t.Fatal(err)
	}
	if err := ann.Post(ctx, "/api/v1/channels/"+ch.ID+"/members", map[string]string{"member": "system"}, nil); err != nil {
		t.Fatalf("invite the bot: %v", err)
	}
	ben := newTestClient(t, s, dir, "ben", "correct horse battery")
	if err := ben.Post(ctx, "/api/v1/channels/"+ch.ID+"/join", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, ann, func(m *client.Message) bool {
		return m.Channel == ch.ID && strings.Contains(m.Body, "joined the channel")
	})
}

func TestSystemBot_FreshInstallStillBootstraps(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, nil, "--system-bot=true")
	code := codeRE.FindString(s.out.String())
	if code == "" {
		t.Fatalf("no bootstrap code although only the bot's account exists:\n%s", s.out.String())
	}
	if st, body := s.post(t, "/api/v1/auth/bootstrap", "", map[string]string{"code": code, "name": "root", "password": "correct horse battery"}); st != 201 {
		t.Fatalf("bootstrap: %d %v", st, body)
	}
}

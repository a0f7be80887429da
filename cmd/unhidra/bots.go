package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/bot"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// systemBotName is the account the built-in bot uses.
const systemBotName = "system"

// startSystemBot runs the built-in bot as a client of this very server,
// over a loopback connection: it is an account like any other and sees only
// what its memberships allow. It returns a function that stops it.
func startSystemBot(ctx context.Context, accounts *auth.Service, st store.Store, tokens *auth.Tokens,
	listenAddr string, cert *tls.Certificate, ml bot.Summarizer, log *slog.Logger) (stop func(), err error) {
	u, err := st.UserByName(ctx, systemBotName)
	switch {
	case unhidra.ErrorCode(err) == protocol.ErrNotFound:
		// No password: the server mints the bot's tokens.
		u, err = accounts.CreateUser(ctx, nil, systemBotName, "", unhidra.RoleBot, auth.Request{IP: "local"})
		if err != nil {
			return nil, fmt.Errorf("create the system bot's account: %w", err)
		}
	case err != nil:
		return nil, err
	case u.Role != unhidra.RoleBot:
		log.Warn("an account named \"system\" exists and is not a bot; the system bot stays off")
		return func() {}, nil
	}
	host, port, _ := net.SplitHostPort(listenAddr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme, tlsCfg := "http", (*tls.Config)(nil)
	if cert != nil {
		scheme, tlsCfg = "https", loopbackTLS(cert)
	}
	c, err := client.New(client.Config{
		BaseURL: scheme + "://" + net.JoinHostPort(host, port), TLS: tlsCfg, Log: log.With("component", "system-bot"),
		// Read afresh each time: the token must carry the current epoch.
		TokenSource: func(ctx context.Context) (string, time.Time, error) {
			cur, err := st.UserByID(ctx, u.ID)
			if err != nil {
				return "", time.Time{}, err
			}
			return tokens.Issue(cur)
		},
	})
	if err != nil {
		return nil, err
	}
	b := &bot.System{Client: c, ML: ml, Log: log.With("component", "system-bot")}
	botCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer c.Close()
		if err := b.Run(botCtx); err != nil {
			log.Error("system bot stopped", "err", err)
		}
	}()
	return sync.OnceFunc(func() { cancel(); wg.Wait() }), nil
}

// loopbackTLS trusts exactly this server's own certificate, by the first
// name it was issued for.
func loopbackTLS(cert *tls.Certificate) *tls.Config {
	leaf := cert.Leaf
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	name := "localhost"
	switch {
	case len(leaf.IPAddresses) > 0 && leaf.IPAddresses[0].IsLoopback():
		name = leaf.IPAddresses[0].String()
	case len(leaf.DNSNames) > 0:
		name = leaf.DNSNames[0]
	}
	return &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}
}

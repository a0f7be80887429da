package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/hub"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/ws"
	"github.com/unhidra/unhidra/protocol"
)

// newGateway builds the WebSocket gateway from the configuration and
// connects it to the account service: tokens authenticate people and bots,
// keys (checked by keyAuth) authenticate devices, and disabling an account
// closes its live connections.
func newGateway(cfg *serveConfig, accounts *auth.Service, b bus.Bus, keyAuth gateway.Authenticator, log *slog.Logger) (*gateway.Gateway, error) {
	maxConns := cfg.maxConns
	if maxConns == 0 {
		maxConns = defaultMaxConns()
	}
	var origins []string
	for _, o := range strings.Split(cfg.allowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	gw, err := gateway.New(gateway.Config{
		Transport: ws.Config{
			MaxMessageSize: int64(cfg.maxFrameBytes),
			PingInterval:   cfg.pingInterval,
			IdleTimeout:    cfg.idleTimeout,
			WriteTimeout:   cfg.writeTimeout,
		},
		Admission: gateway.AdmissionLimits{
			MaxConns:         maxConns,
			MaxConnsPerIP:    cfg.maxConnsPerIP,
			MaxConnsPerIdent: cfg.maxConnsPerUser,
			ConnRatePerIP:    perSecond(cfg.connRateIP, cfg.connBurstIP),
			ConnRatePerIdent: perSecond(cfg.connRateIdent, cfg.connBurstIdent),
		},
		AllowedOrigins: origins,
		MessageRate:    ratelimit.Limit{Burst: cfg.messageBurst, Every: time.Second / time.Duration(cfg.messageRate)},
		DrainWindow:    cfg.drainWindow,
	}, hub.NewRouter(hub.New(), b, log), log)
	if err != nil {
		return nil, err
	}
	gw.SetAuthenticators(tokenAuthenticator(accounts), keyAuth)
	accounts.OnRevoke = func(userID string) { gw.CloseIdentity(userID, protocol.CloseRevoked) }
	return gw, nil
}

// perSecond turns "rate per second, burst" into a token-bucket limit.
func perSecond(rate float64, burst int) ratelimit.Limit {
	return ratelimit.Limit{Burst: burst, Every: time.Duration(float64(time.Second) / rate)}
}

func tokenAuthenticator(accounts *auth.Service) gateway.Authenticator {
	return func(ctx context.Context, token string) (gateway.Identity, error) {
		u, claims, err := accounts.AuthenticateClaims(ctx, token)
		if err != nil {
			return gateway.Identity{}, err
		}
		kind := gateway.KindPerson
		if u.Role == unhidra.RoleBot {
			kind = gateway.KindBot
		}
		return gateway.Identity{Kind: kind, ID: u.ID, Name: u.Name, Admin: u.IsAdmin(), ExpiresAt: claims.ExpiresAt.Time}, nil
	}
}

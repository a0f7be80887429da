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
// afterIdentityChange, if not nil, runs after the gateway applied an identity
// change (serve drops chat's member cache there).
func newGateway(cfg *serveConfig, accounts *auth.Service, b bus.Bus, keyAuth gateway.Authenticator, afterIdentityChange func(), log *slog.Logger) (*gateway.Gateway, error) {
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
			SendBuffer:     cfg.sendBuffer,
			StallTimeout:   cfg.stallTimeout,
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
	gw.SetAuthenticators(tokenAuthenticator(accounts), ownerActive(accounts, keyAuth))
	gw.SetIdentityCheck(func(ctx context.Context, id gateway.Identity) bool {
		if id.Kind == gateway.KindDevice {
			ok, err := accounts.UserActive(ctx, id.OwnerID)
			return ok || err != nil // a store hiccup does not cut devices off
		}
		u, err := accounts.UserState(ctx, id.ID)
		return err != nil || (u.Active && u.Epoch == id.Epoch)
	})
	// Identity changes (password, disable, role, sign out everywhere) close
	// what they invalidate on every node: announced over the bus by the
	// node that made them, and found in the database by every node's
	// watcher (that is how `unhidra admin` reaches a running server).
	accounts.OnIdentityChange = func(st auth.IdentityState) {
		gw.ApplyIdentityState(st.ID, st.Epoch, st.Active)
		if afterIdentityChange != nil {
			afterIdentityChange()
		}
	}
	accounts.PublishChange = func(id string) {
		if err := b.Publish(context.Background(), identitySubject, []byte(id)); err != nil {
			log.Warn("publish identity change; the database watcher will carry it", "err", err)
			accounts.IdentityChanged(context.Background(), id)
		}
	}
	if _, err := b.Subscribe(identitySubject, func(data []byte) {
		if len(data) == 0 || len(data) > 128 {
			return
		}
		accounts.IdentityChanged(context.Background(), string(data))
	}); err != nil {
		gw.Close()
		return nil, err
	}
	return gw, nil
}

// identitySubject carries "this identity changed" between nodes.
const identitySubject = "ctl.identity"

// ownerActive refuses a device whose owner is disabled or gone.
func ownerActive(accounts *auth.Service, keyAuth gateway.Authenticator) gateway.Authenticator {
	if keyAuth == nil {
		return nil
	}
	return func(ctx context.Context, key string) (gateway.Identity, error) {
		id, err := keyAuth(ctx, key)
		if err != nil {
			return id, err
		}
		ok, err := accounts.UserActive(ctx, id.OwnerID)
		if err != nil {
			return gateway.Identity{}, err
		}
		if !ok {
			return gateway.Identity{}, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid credentials.")
		}
		return id, nil
	}
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
		return gateway.Identity{Kind: kind, ID: u.ID, Name: u.Name, Admin: u.IsAdmin(), Epoch: claims.Epoch, ExpiresAt: claims.ExpiresAt.Time}, nil
	}
}

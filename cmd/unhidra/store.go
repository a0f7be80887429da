package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/bus/local"
	busnats "github.com/unhidra/unhidra/internal/bus/nats"
	"github.com/unhidra/unhidra/internal/store/postgres"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/sqlite"
)

// openStore opens the configured store and applies migrations.
func openStore(ctx context.Context, cfg *serveConfig) (*sqldb.DB, error) {
	switch {
	case strings.HasPrefix(cfg.storeURL, "postgres://"), strings.HasPrefix(cfg.storeURL, "postgresql://"):
		return postgres.Open(ctx, cfg.storeURL)
	case strings.HasPrefix(cfg.storeURL, "sqlite:"):
		return sqlite.Open(ctx, strings.TrimPrefix(cfg.storeURL, "sqlite:"))
	case cfg.storeURL == "":
		return sqlite.Open(ctx, filepath.Join(cfg.dataDir, "unhidra.db"))
	}
	return nil, fmt.Errorf("unsupported --store %q", cfg.storeURL)
}

// openBus returns the in-process bus, or joins the cluster's NATS with
// the configured authentication and TLS, every message sealed with the
// cluster key of the data directory (created on first use).
func openBus(cfg *serveConfig, log *slog.Logger) (bus.Bus, error) {
	if cfg.busURL == "" {
		return &local.Bus{}, nil
	}
	log = log.With("component", "bus")
	path := filepath.Join(cfg.dataDir, bus.ClusterKeyFile)
	keys, created, err := bus.LoadOrCreateClusterKeys(path, time.Now())
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("generated a cluster key: copy it to every node of this cluster (0600) before starting them", "file", path)
	}
	var opts []nats.Option
	if cfg.busCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.busCreds))
	}
	if cfg.busNKey != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.busNKey)
		if err != nil {
			return nil, fmt.Errorf("--bus-nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.busUser != "" {
		opts = append(opts, nats.UserInfo(cfg.busUser, cfg.busPassword))
	}
	if cfg.busTLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.busTLSCA))
	}
	if cfg.busTLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.busTLSCert, cfg.busTLSKey))
	}
	nb, err := busnats.Open(cfg.busURL, cfg.busPrefix, log, opts...)
	if err != nil {
		return nil, err
	}
	sealed, err := bus.NewSealed(nb, keys, log)
	if err != nil {
		nb.Close()
		return nil, err
	}
	if cfg.busCreds == "" && cfg.busNKey == "" && cfg.busUser == "" && cfg.busTLSCert == "" {
		log.Warn("the bus connects without authentication: protect the NATS server (see docs/operations.md)")
	}
	return sealed, nil
}

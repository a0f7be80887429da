package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

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

// openBus returns the in-process bus, or joins the cluster's NATS.
func openBus(cfg *serveConfig, log *slog.Logger) (bus.Bus, error) {
	if cfg.busURL == "" {
		return &local.Bus{}, nil
	}
	return busnats.Open(cfg.busURL, cfg.busPrefix, log.With("component", "bus"))
}

package postgres_test

import (
	"context"
	"testing"

	"github.com/unhidra/unhidra/internal/store/postgres"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/internal/store/storetest"
	"github.com/unhidra/unhidra/internal/testenv"
)

func MustOpen(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) { storetest.Run(t, MustOpen) }

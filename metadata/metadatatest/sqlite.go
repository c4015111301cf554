package metadatatest

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/wharf-registry/wharf/gc/gctest"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/metadata/sqlstore"
)

// OpenSQLite opens a fresh SQLite store in a temporary directory, and a
// plain SQL connection of its own to the same file for gctest's queries
// (the store's pools are its own); t's cleanup closes both.
func OpenSQLite(t testing.TB) (*sqlstore.Store, gctest.DB) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wharf.db")
	s, err := sqlite.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	db, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return s, gctest.DB{DB: db}
}

package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wharf-registry/wharf/gc/gctest"
	"github.com/wharf-registry/wharf/metadata/metadatatest"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/registry"
)

func TestContract(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) registry.MetadataStore {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "wharf.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestGCContract runs the collector's store contract; its plain SQL goes
// through a connection of its own to the same file.
func TestGCContract(t *testing.T) {
	gctest.Run(t, func(t *testing.T) (gctest.Store, gctest.DB) {
		return metadatatest.OpenSQLite(t)
	})
}

// TestReopen: migrations run once; a second open of the same file finds
// the schema current and the data intact.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wharf.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LinkBlob(ctx, "r", "sha256:x"); err == nil {
		t.Fatal("LinkBlob of an unknown blob succeeded")
	}
	s.Close()
	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPrivateFiles: the database and its WAL files are this user's only
// (they hold private repositories' manifests), and so is a directory the
// store creates for them.
func TestPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "wharf.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{dir}, func() (ps []string) {
		for _, e := range entries {
			ps = append(ps, filepath.Join(dir, e.Name()))
		}
		return
	}()...) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by other users", p, fi.Mode().Perm())
		}
	}
	if len(entries) < 2 {
		t.Fatalf("expected the database and its WAL files, found %v", entries)
	}
}

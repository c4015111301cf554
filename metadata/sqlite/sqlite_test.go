package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

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

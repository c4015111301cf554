package filesystem_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wharf-registry/wharf/blobstore/blobstoretest"
	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/registry"
)

func TestContract(t *testing.T) {
	roots := map[registry.BlobStore]string{}
	open := func(t *testing.T, dir string) registry.BlobStore {
		s, err := filesystem.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		roots[s] = dir
		return s
	}
	blobstoretest.Run(t,
		func(t *testing.T) registry.BlobStore { return open(t, t.TempDir()) },
		func(t *testing.T, s registry.BlobStore) registry.BlobStore { return open(t, roots[s]) },
	)
}

func TestInvalidKeys(t *testing.T) {
	s, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "../etc/passwd", "/etc/passwd", "blobs/../../x"} {
		if _, err := s.Open(t.Context(), key); err == nil {
			t.Errorf("Open(%q) succeeded", key)
		}
	}
}

// TestLockExcludesOtherProcesses: two stores on one directory (replicas
// sharing it) cannot lock one session at once; the lock goes with its
// holder.
func TestLockExcludesOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	a, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u := &registry.Upload{ID: "racing-session"}
	if err := a.Begin(ctx, u); err != nil {
		t.Fatal(err)
	}
	unlock, err := a.Lock(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, u); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("second Lock while the first is held: %v, want ErrConflict", err)
	}
	unlock()
	unlock2, err := b.Lock(ctx, u)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	unlock2()
}

package filesystem_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/blobstoretest"
	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/registry"
)

// newStore is a store on dir.
func newStore(t *testing.T, dir string) *filesystem.Store {
	t.Helper()
	s, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// begin opens upload u in s.
func begin(t *testing.T, s *filesystem.Store, u *registry.Upload) *registry.Upload {
	t.Helper()
	if err := s.Begin(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestContract(t *testing.T) {
	roots := map[registry.BlobStore]string{}
	open := func(t *testing.T, dir string) registry.BlobStore {
		s := newStore(t, dir)
		roots[s] = dir
		return s
	}
	blobstoretest.Run(t,
		func(t *testing.T) registry.BlobStore { return open(t, t.TempDir()) },
		func(t *testing.T, s registry.BlobStore) registry.BlobStore { return open(t, roots[s]) },
	)
}

func TestInvalidKeys(t *testing.T) {
	s := newStore(t, t.TempDir())
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
	a, b := newStore(t, dir), newStore(t, dir)
	ctx := context.Background()
	u := begin(t, a, &registry.Upload{ID: "racing-session"})
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

// TestPrivateFiles: blob and upload files, and the directories the store
// creates, are this user's only.
func TestPrivateFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data", "blobs")
	s := newStore(t, root)
	ctx := context.Background()
	u := begin(t, s, &registry.Upload{ID: "private"})
	body := []byte("private bytes")
	n, err := s.Append(ctx, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	u.Offset = n
	begin(t, s, &registry.Upload{ID: "open"})
	if _, err := s.Commit(ctx, u, digest.FromBytes(body)); err != nil {
		t.Fatal(err)
	}
	seen := 0
	err = filepath.WalkDir(filepath.Dir(root), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by other users", p, fi.Mode().Perm())
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 7 { // data, blobs, blobs/blobs/sha256/xx/<blob>, uploads, uploads/open
		t.Fatalf("walked only %d paths", seen)
	}
}

package filesystem_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/tmpfstest"
	"github.com/wharf-registry/wharf/registry"
)

// TestFullDiskIsInsufficientStorage: on a full file system an upload's
// write fails with an error wrapping registry.ErrInsufficientStorage (the
// server's 507), and once space is back the session continues from its
// persisted offset.
func TestFullDiskIsInsufficientStorage(t *testing.T) {
	dir := tmpfstest.Mount(t, 4<<20)
	s := newStore(t, dir)
	ctx := t.Context()
	u := begin(t, s, &registry.Upload{ID: "full1", Repo: "a", HashAlg: digest.SHA256, CreatedAt: time.Now()})
	data := bytes.Repeat([]byte("wharf"), 200<<10) // ~1 MiB
	free := tmpfstest.Fill(t, dir)
	if _, err := s.Append(ctx, u, bytes.NewReader(data)); !errors.Is(err, registry.ErrInsufficientStorage) {
		t.Fatalf("append on a full disk: %v, want ErrInsufficientStorage", err)
	}
	free()
	n, err := s.Append(ctx, u, bytes.NewReader(data)) // offset still 0
	if err != nil || n != int64(len(data)) {
		t.Fatalf("append after freeing space: %d, %v", n, err)
	}
	u.Offset = n
	d := digest.FromBytes(data)
	key, err := s.Commit(ctx, u, d)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, _ := digest.SHA256.FromReader(f); got != d {
		t.Fatalf("blob reads back as %s, want %s", got, d)
	}
}

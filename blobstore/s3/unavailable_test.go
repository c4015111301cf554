package s3_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/registry"
)

// TestObjectStoreDownIsUnavailable: while MinIO is down every call fails
// with an error wrapping registry.ErrUnavailable (the server's 503); a
// missing object stays ErrNotFound; after a restart on the same port and
// data the store works again and the blob stored before is intact.
func TestObjectStoreDownIsUnavailable(t *testing.T) {
	m := miniotest.Start(t)
	s := newStore(t, m, "down/")
	ctx := context.Background()
	data := bytes.Repeat([]byte("wharf"), 1000)
	d := digest.FromBytes(data)
	u := &registry.Upload{ID: "down1", Repo: "a", HashAlg: digest.SHA256, CreatedAt: time.Now()}
	if err := s.Begin(ctx, u); err != nil {
		t.Fatal(err)
	}
	n, err := s.Append(ctx, u, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	u.Offset = n
	key, err := s.Commit(ctx, u, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, "down/blobs/missing"); !errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("open of a missing object: %v, want ErrNotFound only", err)
	}
	m.Down()
	calls := map[string]func() error{
		"ping":   func() error { return s.Ping(ctx) },
		"open":   func() error { _, err := s.Open(ctx, key); return err },
		"begin":  func() error { return s.Begin(ctx, &registry.Upload{ID: "down2", Repo: "a", HashAlg: digest.SHA256}) },
		"delete": func() error { return s.Delete(ctx, "down/blobs/other") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s while MinIO is down: %v, want ErrUnavailable", name, err)
		}
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := s.Open(ctx, key)
		if err == nil {
			got, _ := digest.SHA256.FromReader(f)
			f.Close()
			if got != d {
				t.Fatalf("blob after the restart reads %s, want %s", got, d)
			}
			break
		}
		if !errors.Is(err, registry.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("open after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// TestDatabaseDownIsUnavailable: while PostgreSQL is down, and on the
// stale connections right after it restarts, every call fails with an
// error that wraps registry.ErrUnavailable (the server's 503), and nothing
// else does; once it is back the store works again.
func TestDatabaseDownIsUnavailable(t *testing.T) {
	c := pgtest.Private(t)
	ctx := context.Background()
	_, dsn, err := c.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn)
	d := digest.FromString("x")
	calls := map[string]func() error{
		"ping":     func() error { return s.Ping(ctx) },
		"tags":     func() error { _, err := s.Tags(ctx, "a/b", "", 10); return err },
		"manifest": func() error { _, err := s.Manifest(ctx, "a/b", oci.Reference{Tag: "latest"}); return err },
		"blob":     func() error { _, err := s.RepoBlob(ctx, "a/b", d); return err },
		"upload": func() error {
			now := time.Now()
			return s.CreateUpload(ctx, &registry.Upload{ID: "u" + now.Format("150405.000000000"), Repo: "a/b", HashAlg: digest.SHA256, CreatedAt: now, UpdatedAt: now})
		},
		"touch": func() error { return s.TouchBlob(ctx, d) },
	}
	// Answers are not unavailability.
	if err := calls["tags"](); !errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("tags of a missing repository: %v, want ErrNotFound only", err)
	}
	c.Down()
	for name, call := range calls {
		if err := call(); !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s while the database is down: %v, want ErrUnavailable", name, err)
		}
	}
	if err := c.Up(); err != nil {
		t.Fatal(err)
	}
	// The pool's connections died with the server: using them fails, as
	// unavailable, until fresh ones replace them.
	deadline := time.Now().Add(20 * time.Second)
	for name, call := range calls {
		for {
			err := call()
			if errors.Is(err, registry.ErrNotFound) { // an answer
				err = nil
			}
			if err == nil {
				break
			}
			if !errors.Is(err, registry.ErrUnavailable) {
				t.Fatalf("%s after the restart: %v, want success or ErrUnavailable", name, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still fails 20s after the restart: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

package postgres_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/gc/gctest"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/metadata/metadatatest"
	"github.com/wharf-registry/wharf/metadata/postgres"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) registry.MetadataStore {
		return open(t, pgtest.DSN(t))
	})
}

func TestGCContract(t *testing.T) {
	gctest.Run(t, func(t *testing.T) (gctest.Store, gctest.DB) {
		s := open(t, pgtest.DSN(t))
		return s, gctest.DB{DB: s.DB(), Numbered: true, RowLocks: true}
	})
}

// TestConcurrentMigrate: replicas starting at once migrate once; every one
// opens a current schema.
func TestConcurrentMigrate(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	pending, err := postgres.Pending(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := postgres.Migrations()
	if len(pending) != len(all) {
		t.Fatalf("fresh database: %d pending, want %d", len(pending), len(all))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied int
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, MaxConns: 2})
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			mu.Lock()
			applied += len(s.Applied())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if applied != len(all) {
		t.Fatalf("%d migrations applied across 4 replicas, want %d (each once)", applied, len(all))
	}
	if pending, err = postgres.Pending(ctx, dsn); err != nil || len(pending) != 0 {
		t.Fatalf("after open: pending %v, %v", pending, err)
	}
}

// TestChangeFeed: a write through one store reaches another store's
// listener (another replica) in well under a second.
func TestChangeFeed(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 100)
	go func() { _ = b.WatchRepos(ctx, func(repo string) { got <- repo }) }()
	deadline := time.Now().Add(10 * time.Second)
	for !b.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("listener did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for len(got) > 0 {
		<-got
	}
	rec := registry.ManifestRecord{Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000001", MediaType: oci.MediaTypeOCIManifest, Payload: []byte(`{}`)}
	start := time.Now()
	if err := a.PutManifest(ctx, "team/app", registry.NewManifest{Record: rec, Tags: []string{"v1"}}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case repo := <-got:
			if repo == "team/app" {
				if d := time.Since(start); d > time.Second {
					t.Fatalf("notification after %v", d)
				}
				return
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no notification for team/app within 2s")
		}
	}
}

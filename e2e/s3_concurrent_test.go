package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/registry"
)

// losersCounted counts metadata commits that lost to an earlier upload of
// the same digest (the stored key is not the committing upload's), so the
// test knows the race it is about really happened.
type losersCounted struct {
	registry.MetadataStore
	losers *atomic.Int32
}

func (m losersCounted) CommitUpload(ctx context.Context, id string, info registry.BlobInfo) (registry.BlobInfo, error) {
	got, err := m.MetadataStore.CommitUpload(ctx, id, info)
	if err == nil && got.Key != info.Key {
		m.losers.Add(1)
	}
	return got, err
}

// TestS3IdenticalConcurrentUploads: the same blob pushed by several
// clients at once ends as one stored object: every PUT succeeds, each
// loser's object is deleted (the metadata store keeps the first key), no
// session leaves anything under uploads/, and the blob pulls.
func TestS3IdenticalConcurrentUploads(t *testing.T) { eachS3(t, testS3IdenticalConcurrentUploads) }

func testS3IdenticalConcurrentUploads(t *testing.T, kind miniotest.Kind) {
	const clients = 6
	for _, size := range []int{100000, 6<<20 + 17} { // one PutObject; a multipart upload
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var losers atomic.Int32
			reg, _, m := startS3On(t, kind, true, func(ms registry.MetadataStore) registry.MetadataStore {
				return losersCounted{MetadataStore: ms, losers: &losers}
			})
			data := randomBytes(t, size)
			d := digest.FromBytes(data)
			const repo = "s3/same"
			// Open every session first, then release all the PUTs together.
			locs := make([]string, clients)
			for i := range locs {
				locs[i] = startUpload(t, reg.URL, repo)
			}
			start := make(chan struct{})
			errs := make(chan error, clients)
			var wg sync.WaitGroup
			for _, loc := range locs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					req, err := http.NewRequest(http.MethodPut, loc+"&digest="+d.String(), bytes.NewReader(data))
					if err != nil {
						errs <- err
						return
					}
					req.Header.Set("Content-Type", "application/octet-stream")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						errs <- fmt.Errorf("PUT: status %d", resp.StatusCode)
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := losers.Load(); n != clients-1 {
				t.Fatalf("%d uploads lost the commit, want %d", n, clients-1)
			}
			if keys := m.Keys(t, "wharf/blobs/"); len(keys) != 1 {
				t.Fatalf("%d objects under blobs/ after %d identical uploads, want 1: %v", len(keys), clients, keys)
			}
			if keys := m.Keys(t, "wharf/uploads/"); len(keys) != 0 {
				t.Fatalf("objects left under uploads/: %v", keys)
			}
			// The pull follows the 307 to MinIO: the remaining object.
			r := do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
			expectStatus(t, "pull", r, http.StatusOK)
			if !bytes.Equal(r.Body, data) {
				t.Fatalf("pulled %d bytes that differ", len(r.Body))
			}
		})
	}
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/registry"
)

// failingCommit is the real metadata store with CommitUpload failing while
// armed: the blob store has committed, the database has not.
type failingCommit struct {
	registry.MetadataStore
	armed atomic.Bool
}

func (f *failingCommit) CommitUpload(ctx context.Context, id string, info registry.BlobInfo) (registry.BlobInfo, error) {
	if f.armed.Load() {
		return registry.BlobInfo{}, errors.New("injected: the database commit failed")
	}
	return f.MetadataStore.CommitUpload(ctx, id, info)
}

// TestFailedMetadataCommit: when the database commit of an upload fails
// after the blob store committed its bytes, retrying the final PUT of a
// chunked upload succeeds; a monolithic PUT's retry is told to start over,
// and the abandoned session leaves no object behind once it expires. On
// the filesystem and on MinIO.
func TestFailedMetadataCommit(t *testing.T) {
	for _, store := range []string{"filesystem", "s3"} {
		t.Run(store, func(t *testing.T) {
			fc := &failingCommit{}
			meta := func(m registry.MetadataStore) registry.MetadataStore { fc.MetadataStore = m; return fc }
			var reg *wharftest.Registry
			var objects func() []string
			if store == "s3" {
				r, _, m := startS3(t, false, meta)
				reg = r.Registry
				objects = func() []string { return m.Keys(t, "wharf/") }
			} else {
				reg = wharftest.Start(t, wharftest.Options{Meta: meta})
			}
			// Chunked (PATCH, then PUT with no body, as docker pushes): the
			// same PUT retried finds the bytes committed and records them.
			data := randomBytes(t, 6<<20+100) // parts and a tail on S3
			d := digest.FromBytes(data)
			loc := startUpload(t, reg.URL, "retry/app")
			r := do(t, http.MethodPatch, loc, data, "Content-Type: application/octet-stream", fmt.Sprintf("Content-Range: 0-%d", len(data)-1))
			expectStatus(t, "PATCH", r, http.StatusAccepted)
			loc = r.Header.Get("Location")
			fc.armed.Store(true)
			r = do(t, http.MethodPut, loc+"&digest="+d.String(), nil)
			expectError(t, "PUT while the database fails", r, http.StatusInternalServerError, "UNKNOWN")
			fc.armed.Store(false)
			r = do(t, http.MethodPut, loc+"&digest="+d.String(), nil)
			expectStatus(t, "the same PUT retried", r, http.StatusCreated)
			getBlob(t, reg.URL, "retry/app", d)

			// Monolithic (the bytes in the PUT, never recorded in the
			// session): the retry is told the session is gone, the client
			// starts over, and the expiry of the abandoned session
			// releases what its commit wrote.
			other := randomBytes(t, 4096)
			od := digest.FromBytes(other)
			loc = startUpload(t, reg.URL, "retry/app")
			fc.armed.Store(true)
			r = do(t, http.MethodPut, loc+"&digest="+od.String(), other, "Content-Type: application/octet-stream")
			expectStatus(t, "PUT while the database fails", r, http.StatusInternalServerError)
			fc.armed.Store(false)
			r = do(t, http.MethodPut, loc+"&digest="+od.String(), other, "Content-Type: application/octet-stream")
			expectError(t, "the same PUT retried", r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
			pushBlob(t, reg.URL, "retry/app", other)
			if n, err := reg.Registry.ExpireUploads(context.Background(), 0); err != nil || n != 1 {
				t.Fatalf("ExpireUploads = %d, %v; want the abandoned session", n, err)
			}
			if objects != nil {
				if got := objects(); len(got) != 2 {
					t.Fatalf("objects in the bucket: %v, want the two blobs alone", got)
				}
			}
			getBlob(t, reg.URL, "retry/app", d)
			getBlob(t, reg.URL, "retry/app", od)
		})
	}
}

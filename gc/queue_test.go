package gc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// commitBlob records a blob through an upload session on the metadata
// store alone (no storage object: the blob stays referenced).
func commitBlob(t *testing.T, m registry.MetadataStore, repo, s string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	d := digest.FromString(s)
	id := fmt.Sprintf("u-%d", time.Now().UnixNano())
	u := &registry.Upload{ID: id, Repo: repo, HashAlg: digest.SHA256, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := m.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CommitUpload(ctx, id, registry.BlobInfo{Digest: d, Size: int64(len(s)), Key: "key/" + id}); err != nil {
		t.Fatal(err)
	}
	return d
}

func digestsOf(bs []registry.BlobInfo) []digest.Digest {
	out := make([]digest.Digest, len(bs))
	for i, b := range bs {
		out[i] = b.Digest
	}
	slices.Sort(out)
	return out
}

// TestPassReviewsOnlyQueued: a pass looks at the review queue, not at
// every blob. With 2,000 referenced blobs (their queue entries, from the
// uploads, reviewed once and dropped) and then 5 unreferenced ones
// uploaded, the next pass reviews exactly those 5 and collects them.
func TestPassReviewsOnlyQueued(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		const referenced, manifests = 2000, 20
		for m := range manifests {
			var ds []digest.Digest
			for i := range referenced / manifests {
				ds = append(ds, commitBlob(t, e.meta, "big", fmt.Sprintf("blob %d/%d", m, i)))
			}
			payload := fmt.Sprintf(`{"m":%d}`, m)
			if err := e.meta.PutManifest(ctx, "big", registry.NewManifest{
				Record: registry.ManifestRecord{Digest: digest.FromString(payload), MediaType: oci.MediaTypeOCIManifest, Payload: []byte(payload)},
				Blobs:  ds, Tags: []string{fmt.Sprintf("v%d", m)},
			}); err != nil {
				t.Fatal(err)
			}
		}
		opts := gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour)}
		res, err := gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil || len(res.Blobs)+len(res.Manifests) != 0 || res.Reviewed != referenced {
			t.Fatalf("first pass: reviewed %d, collected %d blobs, %d manifests, %v; want %d reviewed, none collected",
				res.Reviewed, len(res.Blobs), len(res.Manifests), err, referenced)
		}
		orph, _ := orphans(t, e, "big", 5)
		res, err = gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil || res.Reviewed != len(orph) || !slices.Equal(digestsOf(res.Blobs), orph) || res.ObjectsGone != len(orph) {
			t.Fatalf("second pass: reviewed %d, collected %v (%d objects), %v; want the %d orphans", res.Reviewed, digestsOf(res.Blobs), res.ObjectsGone, err, len(orph))
		}
		res, err = gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil || res.Reviewed != 0 {
			t.Fatalf("third pass reviewed %d, %v; want 0", res.Reviewed, err)
		}
	})
}

// TestDeleteManifestQueuesBlobs: deleting a manifest queues its blobs; a
// later pass collects the one no other manifest references and keeps the
// shared one. A tag moved or deleted queues the manifest it leaves.
func TestDeleteManifestQueuesBlobs(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		shared := e.putBlob(t, "r", []byte("shared layer"))
		ca := e.putBlob(t, "r", []byte(`{"a":1}`))
		cb := e.putBlob(t, "r", []byte(`{"b":1}`))
		put := func(tag string, cfg digest.Digest, n int) digest.Digest {
			m, err := e.reg.PutManifest(ctx, "r", oci.Reference{Tag: tag}, oci.MediaTypeOCIManifest, image(cfg, n, map[digest.Digest]int{shared: len("shared layer")}))
			if err != nil {
				t.Fatal(err)
			}
			return m.Digest
		}
		a, b := put("a", ca, 7), put("b", cb, 7)
		opts := gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour), Changed: e.reg.Invalidate}
		run := func(o gc.Options) gc.Result {
			t.Helper()
			res, err := gc.New(e.store, e.blobs, o).Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if res := run(opts); len(res.Blobs) != 0 || res.Reviewed != 3 {
			t.Fatalf("before the delete: reviewed %d, collected %v; want the 3 uploads reviewed, none collected", res.Reviewed, digestsOf(res.Blobs))
		}
		if err := e.reg.DeleteManifest(ctx, "r", oci.Reference{Digest: a}); err != nil {
			t.Fatal(err)
		}
		dry := opts
		dry.DryRun = true
		if res := run(dry); !slices.Equal(digestsOf(res.Blobs), []digest.Digest{ca}) || res.Reviewed != 2 {
			t.Fatalf("dry run: reviewed %d, listed %v; want the 2 blobs of the deleted manifest reviewed, %s listed", res.Reviewed, digestsOf(res.Blobs), ca)
		}
		res := run(opts)
		if !slices.Equal(digestsOf(res.Blobs), []digest.Digest{ca}) || res.Reviewed != 2 || res.ObjectsGone != 1 {
			t.Fatalf("after the delete: reviewed %d, collected %v (%d objects); want %s", res.Reviewed, digestsOf(res.Blobs), res.ObjectsGone, ca)
		}
		if e.objectExists(ca) || !e.objectExists(shared) || !e.objectExists(cb) {
			t.Fatalf("objects: %s %v (want gone), shared %v, %s %v", ca, e.objectExists(ca), e.objectExists(shared), cb, e.objectExists(cb))
		}
		if err := pullImage(ctx, e, "r", "b"); err != nil {
			t.Fatalf("pull b: %v", err)
		}
		if res := run(opts); res.Reviewed != 0 {
			t.Fatalf("pass after: reviewed %d; want 0", res.Reviewed)
		}

		// Tag b moves to a new manifest: b's manifest is untagged, queued,
		// and collected with its config; the shared layer stays.
		cc := e.putBlob(t, "r", []byte(`{"c":1}`))
		c := put("b", cc, 7)
		res = run(opts)
		if len(res.Manifests) != 1 || res.Manifests[0].Digest != b || !slices.Equal(digestsOf(res.Blobs), []digest.Digest{cb}) {
			t.Fatalf("after the tag moved: manifests %v, blobs %v; want %s and %s", res.Manifests, digestsOf(res.Blobs), b, cb)
		}
		// Tag b deleted: c goes, and the shared layer with it.
		if err := e.reg.DeleteManifest(ctx, "r", oci.Reference{Tag: "b"}); err != nil {
			t.Fatal(err)
		}
		res = run(opts)
		want := []digest.Digest{cc, shared}
		slices.Sort(want)
		if len(res.Manifests) != 1 || res.Manifests[0].Digest != c || !slices.Equal(digestsOf(res.Blobs), want) {
			t.Fatalf("after the tag was deleted: manifests %v, blobs %v; want %s and %v", res.Manifests, digestsOf(res.Blobs), c, want)
		}
		if _, err := e.meta.Blob(ctx, shared); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("shared layer: %v", err)
		}
	})
}

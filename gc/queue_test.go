package gc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/gc/gctest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// commitBlob records a blob through an upload session on the metadata
// store alone (no storage object: the blob stays referenced).
func commitBlob(t *testing.T, m registry.MetadataStore, repo, s string) digest.Digest {
	t.Helper()
	return gctest.Commit(t, m, repo, s, "").Digest
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
		if err != nil || res.Reviewed != len(orph) || !slices.Equal(gctest.DigestsOf(res.Blobs), orph) || res.ObjectsGone != len(orph) {
			t.Fatalf("second pass: reviewed %d, collected %v (%d objects), %v; want the %d orphans", res.Reviewed, gctest.DigestsOf(res.Blobs), res.ObjectsGone, err, len(orph))
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
			t.Fatalf("before the delete: reviewed %d, collected %v; want the 3 uploads reviewed, none collected", res.Reviewed, gctest.DigestsOf(res.Blobs))
		}
		if err := e.reg.DeleteManifest(ctx, "r", oci.Reference{Digest: a}); err != nil {
			t.Fatal(err)
		}
		dry := opts
		dry.DryRun = true
		if res := run(dry); !slices.Equal(gctest.DigestsOf(res.Blobs), []digest.Digest{ca}) || res.Reviewed != 2 {
			t.Fatalf("dry run: reviewed %d, listed %v; want the 2 blobs of the deleted manifest reviewed, %s listed", res.Reviewed, gctest.DigestsOf(res.Blobs), ca)
		}
		res := run(opts)
		if !slices.Equal(gctest.DigestsOf(res.Blobs), []digest.Digest{ca}) || res.Reviewed != 2 || res.ObjectsGone != 1 {
			t.Fatalf("after the delete: reviewed %d, collected %v (%d objects); want %s", res.Reviewed, gctest.DigestsOf(res.Blobs), res.ObjectsGone, ca)
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
		if len(res.Manifests) != 1 || res.Manifests[0].Digest != b || !slices.Equal(gctest.DigestsOf(res.Blobs), []digest.Digest{cb}) {
			t.Fatalf("after the tag moved: manifests %v, blobs %v; want %s and %s", res.Manifests, gctest.DigestsOf(res.Blobs), b, cb)
		}
		// Tag b deleted: c goes, and the shared layer with it.
		if err := e.reg.DeleteManifest(ctx, "r", oci.Reference{Tag: "b"}); err != nil {
			t.Fatal(err)
		}
		res = run(opts)
		want := []digest.Digest{cc, shared}
		slices.Sort(want)
		if len(res.Manifests) != 1 || res.Manifests[0].Digest != c || !slices.Equal(gctest.DigestsOf(res.Blobs), want) {
			t.Fatalf("after the tag was deleted: manifests %v, blobs %v; want %s and %v", res.Manifests, gctest.DigestsOf(res.Blobs), c, want)
		}
		if _, err := e.meta.Blob(ctx, shared); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("shared layer: %v", err)
		}
	})
}

// putMeta stores a manifest through the metadata store alone (payload
// only names it) and returns its digest.
func putMeta(t *testing.T, e *env, repo, payload string, m registry.NewManifest) digest.Digest {
	t.Helper()
	return gctest.Put(t, e.meta, repo, payload, m)
}

func (e *env) manifestQueued(t *testing.T, repo string, d digest.Digest) bool {
	t.Helper()
	return e.raw.Count(t, `SELECT COUNT(*) FROM gc_manifest_queue WHERE repo = ? AND digest = ?`, repo, string(d)) == 1
}

// TestKeepModeDrainsManifestQueue: with gc.untagged: keep a pass deletes
// no manifest, but drops the due entries of manifests that are tagged,
// deleted, children of an index or referrers of a live subject; only the
// untagged, unkept manifest stays queued (what delete would collect).
func TestKeepModeDrainsManifestQueue(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		l := commitBlob(t, e.meta, "k", "keep layer")
		tagged := putMeta(t, e, "k", `{"tagged later":1}`, registry.NewManifest{Blobs: []digest.Digest{l}})
		putMeta(t, e, "k", `{"tagged later":1}`, registry.NewManifest{Blobs: []digest.Digest{l}, Tags: []string{"v1"}})
		untagged := putMeta(t, e, "k", `{"tag deleted":1}`, registry.NewManifest{Blobs: []digest.Digest{l}, Tags: []string{"old"}})
		if err := e.meta.DeleteTag(ctx, "k", "old"); err != nil {
			t.Fatal(err)
		}
		gone := putMeta(t, e, "k", `{"deleted":1}`, registry.NewManifest{Blobs: []digest.Digest{l}})
		if err := e.meta.DeleteManifest(ctx, "k", gone); err != nil {
			t.Fatal(err)
		}
		child := putMeta(t, e, "k", `{"child":1}`, registry.NewManifest{Blobs: []digest.Digest{l}})
		putMeta(t, e, "k", `{"index":1}`, registry.NewManifest{Record: registry.ManifestRecord{MediaType: oci.MediaTypeOCIIndex},
			Children: []digest.Digest{child}, Tags: []string{"multi"}})
		referrer := putMeta(t, e, "k", `{"signature":1}`, registry.NewManifest{Record: registry.ManifestRecord{Subject: tagged}})
		queued := `SELECT COUNT(*) FROM gc_manifest_queue`
		if n := e.raw.Count(t, queued); n != 5 {
			t.Fatalf("%d manifest queue entries before the pass; want 5 (tagged later, tag deleted, deleted, child, referrer)", n)
		}
		keep := gc.Options{Now: later(48 * time.Hour)}
		dry := keep
		dry.DryRun = true
		if res, err := gc.New(e.store, e.blobs, dry).Run(ctx); err != nil || len(res.Manifests) != 0 || e.raw.Count(t, queued) != 5 {
			t.Fatalf("dry keep pass: %v, manifests %v, %d entries left; want none listed, 5 left", err, res.Manifests, e.raw.Count(t, queued))
		}
		res, err := gc.New(e.store, e.blobs, keep).Run(ctx)
		if err != nil || len(res.Manifests) != 0 {
			t.Fatalf("keep pass: %v, deleted manifests %v", err, res.Manifests)
		}
		if n := e.raw.Count(t, queued); n != 1 || !e.manifestQueued(t, "k", untagged) {
			t.Fatalf("%d manifest queue entries after the keep pass (untagged queued: %v); want only the untagged manifest's", n, e.manifestQueued(t, "k", untagged))
		}
		for _, d := range []digest.Digest{tagged, untagged, child, referrer} {
			if _, err := e.meta.Manifest(ctx, "k", oci.Reference{Digest: d}); err != nil {
				t.Fatalf("manifest %s after a keep pass: %v", d, err)
			}
		}
		// A second keep pass keeps the entry; delete mode then collects it.
		if _, err := gc.New(e.store, e.blobs, keep).Run(ctx); err != nil || e.raw.Count(t, queued) != 1 {
			t.Fatalf("second keep pass: %v, %d entries", err, e.raw.Count(t, queued))
		}
		res, err = gc.New(e.store, e.blobs, gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour)}).Run(ctx)
		if err != nil || len(res.Manifests) != 1 || res.Manifests[0].Digest != untagged || e.raw.Count(t, queued) != 0 {
			t.Fatalf("delete pass: %v, manifests %v, %d entries left; want %s collected, none left", err, res.Manifests, e.raw.Count(t, queued), untagged)
		}
	})
}

// oldReplica writes like a replica from before the review queues: rows
// only (gctest.Legacy), no queue entries, each blob with its storage
// object.
type oldReplica struct {
	gctest.Legacy
	t *testing.T
	e *env
}

func newOldReplica(t *testing.T, e *env, repo string) oldReplica {
	o := oldReplica{Legacy: gctest.Legacy{DB: e.raw, Repo: repo, At: time.Now().Add(-time.Hour).UnixNano()}, t: t, e: e}
	o.Repository(t)
	return o
}

func (o oldReplica) blob(s string) digest.Digest {
	o.t.Helper()
	d := digest.FromString(s)
	key := filesystem.Key(d)
	p := filepath.Join(o.e.root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		o.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		o.t.Fatal(err)
	}
	o.Blob(o.t, d, len(s), key)
	return d
}

// TestRescanQueuesUnqueuedGarbage: garbage written without queueing (an
// old replica during a rolling upgrade) is invisible to a pass until a
// rescan queues it; a dry rescan only counts; the pass after a rescan
// collects the garbage and keeps what a tag, an index or a live subject
// keeps. (What a rescan queues is gctest's.)
func TestRescanQueuesUnqueuedGarbage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old := newOldReplica(t, e, "up/app")
		kept := old.blob("kept layer")
		orphan := old.blob("orphan layer")
		untaggedLayer := old.blob("untagged layer")
		tagged := old.Manifest(t, `{"tagged":1}`, "v1", "", nil, kept)
		untagged := old.Manifest(t, `{"untagged":1}`, "", "", nil, untaggedLayer)
		child := old.Manifest(t, `{"child":1}`, "", "", nil, kept)
		old.Manifest(t, `{"index":1}`, "multi", "", []digest.Digest{child})
		referrer := old.Manifest(t, `{"signature":1}`, "", tagged, nil)

		opts := gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour)}
		col := gc.New(e.store, e.blobs, opts)
		if res, err := col.Run(ctx); err != nil || res.Reviewed+len(res.Blobs)+len(res.Manifests) != 0 {
			t.Fatalf("pass before the rescan: %v, reviewed %d; want nothing (nothing queued)", err, res.Reviewed)
		}
		dry := opts
		dry.DryRun = true
		if r, err := gc.New(e.store, e.blobs, dry).Rescan(ctx); err != nil || r.Blobs != 1 || r.Manifests != 1 {
			t.Fatalf("dry rescan: %+v, %v; want 1 blob, 1 manifest counted", r, err)
		}
		if n := e.raw.Count(t, `SELECT COUNT(*) FROM gc_blob_queue`) + e.raw.Count(t, `SELECT COUNT(*) FROM gc_manifest_queue`); n != 0 {
			t.Fatalf("dry rescan queued %d entries", n)
		}
		// Pages of 1 (Batch), so every page boundary is crossed.
		small := opts
		small.Batch = 1
		if r, err := gc.New(e.store, e.blobs, small).Rescan(ctx); err != nil || r.Blobs != 1 || r.Manifests != 1 {
			t.Fatalf("rescan: %+v, %v; want the orphan and the untagged manifest queued", r, err)
		}
		res, err := col.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []digest.Digest{orphan, untaggedLayer}
		slices.Sort(want)
		if len(res.Manifests) != 1 || res.Manifests[0].Digest != untagged || !slices.Equal(gctest.DigestsOf(res.Blobs), want) || res.ObjectsGone != 2 {
			t.Fatalf("pass after the rescan: manifests %v, blobs %v (%d objects); want %s and %v", res.Manifests, gctest.DigestsOf(res.Blobs), res.ObjectsGone, untagged, want)
		}
		for _, d := range []digest.Digest{tagged, child, referrer} {
			if _, err := e.meta.Manifest(ctx, old.Repo, oci.Reference{Digest: d}); err != nil {
				t.Fatalf("kept manifest %s: %v", d, err)
			}
		}
		if !e.objectExists(kept) || e.objectExists(orphan) || e.objectExists(untaggedLayer) {
			t.Fatalf("objects: kept %v, orphan %v, untagged layer %v", e.objectExists(kept), e.objectExists(orphan), e.objectExists(untaggedLayer))
		}
	})
}

// TestWorkerRescansOnTakingLease: a worker that takes the maintenance
// lease rescans before its first pass, so garbage written without queue
// entries is collected.
func TestWorkerRescansOnTakingLease(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		old := newOldReplica(t, e, "up/app")
		orphan := old.blob("orphan written by an old replica")
		w := &gc.Worker{Store: e.store, Collector: gc.New(e.store, e.blobs, gc.Options{Now: later(48 * time.Hour)}),
			GCInterval: time.Hour, Holder: "new", Tick: 10 * time.Millisecond, LeaseTTL: time.Second}
		stop := runWorker(w)
		defer stop()
		deadline := time.Now().Add(10 * time.Second)
		for e.objectExists(orphan) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		if e.objectExists(orphan) {
			t.Fatal("the worker's first pass did not collect the unqueued orphan")
		}
	})
}

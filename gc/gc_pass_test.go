package gc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// orphans uploads n unreferenced blobs to repo and returns their digests
// in digest order (the order GC visits them) with their contents.
func orphans(t *testing.T, e *env, repo string, n int) ([]digest.Digest, map[digest.Digest][]byte) {
	t.Helper()
	data := map[digest.Digest][]byte{}
	ds := make([]digest.Digest, 0, n)
	for i := range n {
		b := fmt.Appendf(nil, "orphan %s %d", t.Name(), i)
		d := e.putBlob(t, repo, b)
		data[d] = b
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds, data
}

// TestSweepPassEnds: more than a batch of queued deletions whose first
// 500+ were uploaded again after the pass started (so they must stay
// queued) must not keep the sweep re-reading them: the pass ends and
// deletes the rest.
func TestSweepPassEnds(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		const total, reuploaded = 700, 550
		ds, data := orphans(t, e, "q", total)
		time.Sleep(5 * time.Millisecond)
		mid := time.Now()
		time.Sleep(5 * time.Millisecond)
		// Collected from the database, storage deletion queued.
		if got, err := e.store.CollectBlobs(context.Background(), ds, time.Now().Add(time.Hour)); err != nil || len(got) != total {
			t.Fatalf("collected %d of %d, %v", len(got), total, err)
		}
		// The first ones (in queue order) are pushed again after the
		// pass's review cut-off.
		for _, d := range ds[:reuploaded] {
			e.putBlob(t, "q", data[d])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		res, err := gc.New(e.store, e.blobs, gc.Options{ReviewDelay: time.Hour, Now: func() time.Time { return mid.Add(time.Hour) }}).Run(ctx)
		if err != nil {
			t.Fatalf("pass (%s): %v", time.Since(start), err)
		}
		if res.ObjectsGone != total-reuploaded || len(res.Blobs) != 0 {
			t.Fatalf("pass deleted %d objects, collected %d blobs; want %d objects, 0 blobs", res.ObjectsGone, len(res.Blobs), total-reuploaded)
		}
		for i, d := range ds {
			if got := e.objectExists(d); got != (i < reuploaded) {
				t.Fatalf("%s (#%d): object exists %v", d, i, got)
			}
		}
		for _, d := range ds[:reuploaded] {
			_, rc, err := e.reg.OpenBlob(context.Background(), "q", d)
			if err != nil {
				t.Fatalf("re-uploaded %s: %v", d, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data[d]) {
				t.Fatalf("re-uploaded %s: content changed", d)
			}
		}
		// Later, with the review delay past, the rest of the queue goes
		// (dropped, the objects being live) and the re-uploads with it.
		res, err = gc.New(e.store, e.blobs, gc.Options{Now: later(48 * time.Hour)}).Run(ctx)
		if err != nil || len(res.Blobs) != reuploaded || res.ObjectsGone != reuploaded {
			t.Fatalf("later pass: %d blobs, %d objects, %v", len(res.Blobs), res.ObjectsGone, err)
		}
		if p, _ := e.store.PendingBlobDeletionsAfter(ctx, "", 10); len(p) != 0 {
			t.Fatalf("pending after later pass: %v", p)
		}
	})
}

// TestDryRunListsAll: a dry run reports every blob and every manifest
// the real pass then deletes, beyond one batch.
func TestDryRunListsAll(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		ds, _ := orphans(t, e, "d", 560)
		opts := gc.Options{Now: later(48 * time.Hour)}
		dry := opts
		dry.DryRun = true
		res, err := gc.New(e.store, e.blobs, dry).Run(ctx)
		if err != nil || len(res.Blobs) != len(ds) {
			t.Fatalf("dry run: %d blobs, %v; want %d", len(res.Blobs), err, len(ds))
		}
		real, err := gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil || len(real.Blobs) != len(res.Blobs) || real.ObjectsGone != len(ds) {
			t.Fatalf("real pass: %d blobs, %d objects, %v; dry run listed %d", len(real.Blobs), real.ObjectsGone, err, len(res.Blobs))
		}
		// Untagged manifests, several batches of them.
		for i := range 30 {
			e.push(t, "d", "", fmt.Sprintf(`{"u":%d}`, i), fmt.Sprintf("untagged layer %d", i))
		}
		e.push(t, "d", "v1", `{"kept":1}`, "kept layer")
		opts = gc.Options{DeleteUntagged: true, Batch: 7, Now: later(48 * time.Hour), Changed: e.reg.Invalidate}
		dry = opts
		dry.DryRun = true
		res, err = gc.New(e.store, e.blobs, dry).Run(ctx)
		if err != nil || len(res.Manifests) != 30 {
			t.Fatalf("dry run: %d manifests, %v; want 30", len(res.Manifests), err)
		}
		if len(res.Blobs) != 60 {
			t.Fatalf("dry run: %d blobs; want the 60 the untagged manifests free", len(res.Blobs))
		}
		real, err = gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil || len(real.Manifests) != len(res.Manifests) || len(real.Blobs) != len(res.Blobs) {
			t.Fatalf("real pass: %d manifests, %d blobs, %v; dry run listed %d manifests, %d blobs", len(real.Manifests), len(real.Blobs), err, len(res.Manifests), len(res.Blobs))
		}
	})
}

// TestCollectS3: a pass over the S3 blob store on a real MinIO deletes
// the unreferenced blobs from the database and from the bucket, and the
// referenced ones still download.
func TestCollectS3(t *testing.T) {
	m := miniotest.Start(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			meta, store, _ := b.open(t)
			prefix := "gc-" + b.name + "/"
			blobs, err := s3.New(ctx, s3.Options{Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: prefix,
				AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: s3.MinPartSize})
			if err != nil {
				t.Fatal(err)
			}
			e := &env{reg: registry.New(meta, blobs, registry.Options{}), store: store, meta: meta, blobs: blobs}
			_, kept := e.push(t, "s3/app", "v1", `{"kept":1}`, "kept layer")
			_, untaggedBlobs := e.push(t, "s3/app", "", `{"untagged":1}`, "untagged layer")
			gone, _ := orphans(t, e, "s3/app", 20)
			gone = append(gone, untaggedBlobs...)
			keys := map[digest.Digest]string{}
			for _, d := range append(slices.Clone(gone), kept...) {
				info, err := meta.Blob(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				keys[d] = info.Key
			}
			list := func() map[string]bool {
				out := map[string]bool{}
				for _, k := range m.Keys(t, prefix) {
					out[k] = true
				}
				return out
			}
			objs := list()
			for d, k := range keys {
				if !objs[k] {
					t.Fatalf("%s: object %s not in the bucket before GC", d, k)
				}
			}
			res, err := gc.New(store, blobs, gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour), Changed: e.reg.Invalidate}).Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Blobs) != len(gone) || res.ObjectsGone != len(gone) || len(res.Manifests) != 1 {
				t.Fatalf("pass: %d manifests, %d blobs, %d objects; want 1, %d, %d", len(res.Manifests), len(res.Blobs), res.ObjectsGone, len(gone), len(gone))
			}
			objs = list()
			for _, d := range gone {
				if _, err := meta.Blob(ctx, d); !errors.Is(err, registry.ErrNotFound) {
					t.Fatalf("%s still in the database: %v", d, err)
				}
				if objs[keys[d]] {
					t.Fatalf("%s: object %s still in the bucket", d, keys[d])
				}
			}
			for _, d := range kept {
				if !objs[keys[d]] {
					t.Fatalf("referenced %s: object %s gone", d, keys[d])
				}
				_, rc, err := e.reg.OpenBlob(ctx, "s3/app", d)
				if err != nil {
					t.Fatalf("referenced %s: %v", d, err)
				}
				got, err := digest.SHA256.FromReader(rc)
				rc.Close()
				if err != nil || got != d {
					t.Fatalf("referenced %s read back as %s (%v)", d, got, err)
				}
			}
			var blobObjs []string
			for k := range objs {
				if !strings.Contains(k, "/uploads/") {
					blobObjs = append(blobObjs, k)
				}
			}
			if len(blobObjs) != len(kept) {
				t.Fatalf("bucket holds %d objects after GC, %d referenced: %v", len(blobObjs), len(kept), blobObjs)
			}
			if rec, err := e.reg.Manifest(ctx, "s3/app", oci.Reference{Tag: "v1"}); err != nil || rec.Digest == "" {
				t.Fatalf("tagged manifest: %v", err)
			}
		})
	}
}

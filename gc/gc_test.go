package gc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/gc/gctest"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/metadata/metadatatest"
	"github.com/wharf-registry/wharf/metadata/postgres"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type env struct {
	reg   *registry.Registry
	store gc.Store
	meta  registry.MetadataStore
	blobs registry.BlobStore
	root  string
	raw   gctest.DB
}

type backend struct {
	name string
	open func(t *testing.T) (registry.MetadataStore, gc.Store, gctest.DB)
}

var backends = []backend{
	{"sqlite", func(t *testing.T) (registry.MetadataStore, gc.Store, gctest.DB) {
		s, db := metadatatest.OpenSQLite(t)
		return s, s, db
	}},
	{"postgres", func(t *testing.T) (registry.MetadataStore, gc.Store, gctest.DB) {
		s, err := postgres.Open(context.Background(), postgres.Options{DSN: pgtest.DSN(t), MaxConns: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, s, gctest.DB{DB: s.DB(), Numbered: true, RowLocks: true}
	}},
}

func each(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			meta, store, raw := b.open(t)
			root := filepath.Join(t.TempDir(), "blobs")
			blobs, err := filesystem.New(root)
			if err != nil {
				t.Fatal(err)
			}
			reg := registry.New(meta, blobs, registry.Options{})
			fn(t, &env{reg: reg, store: store, meta: meta, blobs: blobs, root: root, raw: raw})
		})
	}
}

func (e *env) putBlob(t testing.TB, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := e.reg.PutBlob(context.Background(), repo, d, registry.Chunk{Body: bytes.NewReader(b), Start: -1, Length: int64(len(b))}); err != nil {
		t.Fatalf("put blob: %v", err)
	}
	return d
}

// image builds a manifest over a config and layers already pushed.
func image(cfg digest.Digest, cfgSize int, layers map[digest.Digest]int) []byte {
	var ls []byte
	for d, n := range layers {
		if len(ls) > 0 {
			ls = append(ls, ',')
		}
		ls = fmt.Appendf(ls, `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, d, n)
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`, cfg, cfgSize, ls)
}

// push uploads a config and a layer with the given contents and tags a
// manifest over them; it returns the manifest digest and blob digests.
func (e *env) push(t testing.TB, repo, tag, cfg, layer string) (digest.Digest, []digest.Digest) {
	t.Helper()
	c := e.putBlob(t, repo, []byte(cfg))
	l := e.putBlob(t, repo, []byte(layer))
	m := image(c, len(cfg), map[digest.Digest]int{l: len(layer)})
	ref := oci.Reference{Tag: tag}
	if tag == "" {
		ref = oci.Reference{Digest: digest.FromBytes(m)}
	}
	man, err := e.reg.PutManifest(context.Background(), repo, ref, oci.MediaTypeOCIManifest, m)
	if err != nil {
		t.Fatalf("put manifest: %v", err)
	}
	return man.Digest, []digest.Digest{c, l}
}

func (e *env) objectExists(d digest.Digest) bool {
	_, err := os.Stat(filepath.Join(e.root, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded()))
	return err == nil
}

func later(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

// TestCollect: unreferenced blobs and untagged manifests go, from the
// database and from storage; tagged images stay whole.
func TestCollect(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		kept, keptBlobs := e.push(t, "team/app", "v1", `{"kept":1}`, "kept layer")
		untagged, untaggedBlobs := e.push(t, "team/app", "", `{"untagged":1}`, "untagged layer")
		orphan := e.putBlob(t, "team/app", []byte("orphan, no manifest"))

		// Within the review delay nothing goes.
		res, err := gc.New(e.store, e.blobs, gc.Options{DeleteUntagged: true}).Run(ctx)
		if err != nil || len(res.Blobs)+len(res.Manifests) != 0 {
			t.Fatalf("fresh content collected: %+v, %v", res, err)
		}
		// Dry run two days later lists and changes nothing.
		dry := gc.Options{DeleteUntagged: true, DryRun: true, Now: later(48 * time.Hour)}
		res, err = gc.New(e.store, e.blobs, dry).Run(ctx)
		if err != nil || len(res.Manifests) != 1 || len(res.Blobs) != 3 {
			t.Fatalf("dry run: %+v, %v (want the untagged manifest, the orphan and the manifest's two blobs)", res, err)
		}
		if !e.objectExists(orphan) {
			t.Fatal("dry run deleted")
		}
		var changed []string
		opts := gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour), Changed: func(r string) { changed = append(changed, r); e.reg.Invalidate(r) }}
		res, err = gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Manifests) != 1 || res.Manifests[0].Digest != untagged {
			t.Fatalf("manifests collected: %+v", res.Manifests)
		}
		gone := map[digest.Digest]bool{}
		for _, b := range res.Blobs {
			gone[b.Digest] = true
		}
		want := []digest.Digest{orphan, untaggedBlobs[0], untaggedBlobs[1]}
		if len(gone) != len(want) || res.ObjectsGone != len(want) {
			t.Fatalf("blobs collected %v (%d objects); want %v", res.Blobs, res.ObjectsGone, want)
		}
		for _, d := range want {
			if !gone[d] || e.objectExists(d) {
				t.Fatalf("%s: collected %v, object still there %v", d, gone[d], e.objectExists(d))
			}
			if _, err := e.meta.Blob(ctx, d); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("%s still in the database: %v", d, err)
			}
		}
		if _, err := e.reg.Manifest(ctx, "team/app", oci.Reference{Digest: untagged}); err == nil {
			t.Fatal("collected manifest still served")
		}
		rec, err := e.reg.Manifest(ctx, "team/app", oci.Reference{Tag: "v1"})
		if err != nil || rec.Digest != kept {
			t.Fatalf("tagged manifest: %v %v", rec.Digest, err)
		}
		for _, d := range keptBlobs {
			if !e.objectExists(d) {
				t.Fatalf("referenced blob %s deleted", d)
			}
		}
		if len(changed) != 1 || changed[0] != "team/app" {
			t.Fatalf("changed = %v", changed)
		}
		// A second pass finds nothing.
		res, err = gc.New(e.store, e.blobs, opts).Run(ctx)
		if err != nil || len(res.Blobs)+len(res.Manifests)+res.ObjectsGone != 0 {
			t.Fatalf("second pass: %+v %v", res, err)
		}
	})
}

// TestBlobBeforeManifest: a blob uploaded just before its manifest is not
// collected by a pass that runs in between, and the manifest then commits.
func TestBlobBeforeManifest(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cfg, layer := `{"a":1}`, "layer bytes"
		c := e.putBlob(t, "r", []byte(cfg))
		l := e.putBlob(t, "r", []byte(layer))
		res, err := gc.New(e.store, e.blobs, gc.Options{DeleteUntagged: true}).Run(ctx) // default 24h review delay
		if err != nil || len(res.Blobs) != 0 {
			t.Fatalf("pass between blob and manifest collected %+v, %v", res.Blobs, err)
		}
		if _, err := e.reg.PutManifest(ctx, "r", oci.Reference{Tag: "v1"}, oci.MediaTypeOCIManifest, image(c, len(cfg), map[digest.Digest]int{l: len(layer)})); err != nil {
			t.Fatal(err)
		}
		// Even much later, referenced blobs stay.
		res, err = gc.New(e.store, e.blobs, gc.Options{Now: later(1000 * time.Hour)}).Run(ctx)
		if err != nil || len(res.Blobs) != 0 || !e.objectExists(c) || !e.objectExists(l) {
			t.Fatalf("referenced blobs collected: %+v, %v", res.Blobs, err)
		}
	})
}

// TestUnderLoad: pushers move tags and pullers pull while collection
// passes run back to back with a short review delay. Afterwards every
// tag pulls with verified digests, and a final pass leaves exactly the
// referenced blobs in the database and in storage.
//
// It runs on both blob stores: files, and S3 on a real MinIO (listing the
// bucket afterwards), each over SQLite and PostgreSQL.
func TestUnderLoad(t *testing.T) {
	t.Run("filesystem", func(t *testing.T) {
		each(t, func(t *testing.T, e *env) {
			underLoad(t, e, loadSize{pushes: 25, pulls: 2000, delay: 1500 * time.Millisecond}, func(t *testing.T) map[string]bool {
				keys := map[string]bool{}
				_ = filepath.Walk(filepath.Join(e.root, "blobs"), func(p string, fi os.FileInfo, err error) error {
					if err == nil && !fi.IsDir() {
						rel, _ := filepath.Rel(e.root, p)
						keys[filepath.ToSlash(rel)] = true
					}
					return nil
				})
				return keys
			})
		})
	})
	t.Run("s3", func(t *testing.T) {
		m := miniotest.Start(t)
		for _, b := range backends {
			t.Run(b.name, func(t *testing.T) {
				prefix := "load-" + b.name + "/"
				e := s3Env(t, m, b, prefix)
				// Smaller: every request goes to MinIO on a busy machine.
				underLoad(t, e, loadSize{pushes: 8, pulls: 150, delay: time.Second}, func(t *testing.T) map[string]bool {
					keys := map[string]bool{}
					for _, k := range m.Keys(t, prefix+"blobs/") {
						keys[k] = true
					}
					return keys
				})
			})
		}
	})
}

// s3Env is an env over b's metadata store and an S3 blob store on m,
// under prefix in its bucket.
func s3Env(t *testing.T, m *miniotest.Server, b backend, prefix string) *env {
	t.Helper()
	meta, store, raw := b.open(t)
	blobs, err := s3.New(context.Background(), s3.Options{Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: prefix,
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: s3.MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	return &env{reg: registry.New(meta, blobs, registry.Options{}), store: store, meta: meta, blobs: blobs, raw: raw}
}

// loadSize bounds underLoad: pushes per pusher, pulls per puller (at
// most: pulls stop when the pushes are done), and the review delay.
type loadSize struct {
	pushes, pulls int
	delay         time.Duration
}

// underLoad is TestUnderLoad on e; objects lists the blob objects in
// its storage by key.
func underLoad(t *testing.T, e *env, size loadSize, objects func(t *testing.T) map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const (
		pushers = 3
		pullers = 3
	)
	pushesEa, delay := size.pushes, size.delay
	repos := []string{"load/a", "load/b"}
	tags := []string{"t0", "t1", "t2"}
	var (
		wg                        sync.WaitGroup
		pushDone                  atomic.Bool
		pushes, pulls, retries, n atomic.Int64
		failures                  = make(chan error, 100)
	)
	// Shared layer so blobs are also re-linked across images.
	shared := "shared base layer"
	for w := 0; w < pushers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < pushesEa && ctx.Err() == nil; i++ {
				repo, tag := repos[rng.IntN(len(repos))], tags[rng.IntN(len(tags))]
				cfg := fmt.Sprintf(`{"n":%d}`, n.Add(1))
				layer := fmt.Sprintf("layer %d %d", w, i)
				for attempt := 0; ; attempt++ {
					err := pushImage(ctx, e, repo, tag, cfg, layer, shared)
					if err == nil {
						pushes.Add(1)
						break
					}
					// A blob collected between its upload and the manifest
					// (slower than the review delay) is refused: push again.
					if attempt < 5 && errors.Is(err, oci.ErrManifestBlobUnknown) {
						retries.Add(1)
						continue
					}
					failures <- fmt.Errorf("push %s:%s: %w", repo, tag, err)
					return
				}
			}
		}()
	}
	for w := 0; w < pullers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for k := 0; k < size.pulls && !pushDone.Load() && ctx.Err() == nil; k++ {
				repo, tag := repos[rng.IntN(len(repos))], tags[rng.IntN(len(tags))]
				if err := pullImage(ctx, e, repo, tag); err != nil && !errors.Is(err, errRaced) {
					failures <- fmt.Errorf("pull %s:%s: %w", repo, tag, err)
					return
				}
				pulls.Add(1)
			}
		}()
	}
	passes := 0
	gcDone := make(chan error, 1)
	go func() {
		col := gc.New(e.store, e.blobs, gc.Options{ReviewDelay: delay, DeleteUntagged: true, UntaggedAfter: delay, Changed: e.reg.Invalidate})
		for !pushDone.Load() && ctx.Err() == nil {
			if _, err := col.Run(ctx); err != nil {
				gcDone <- err
				return
			}
			passes++
			time.Sleep(20 * time.Millisecond)
		}
		gcDone <- nil
	}()
	go func() { wg.Wait(); pushDone.Store(true) }()
	if err := <-gcDone; err != nil {
		t.Fatalf("gc: %v", err)
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d pushes (%d retried), %d pulls, %d GC passes during load", pushes.Load(), retries.Load(), pulls.Load(), passes)
	if passes < 2 {
		t.Fatalf("only %d GC passes ran during the load", passes)
	}
	// Everything tagged pulls, verified.
	check := func() map[digest.Digest]bool {
		live := map[digest.Digest]bool{}
		for _, repo := range repos {
			for _, tag := range tags {
				rec, err := e.reg.Manifest(ctx, repo, oci.Reference{Tag: tag})
				if errors.Is(err, oci.ErrManifestUnknown) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := pullImage(ctx, e, repo, tag); err != nil {
					t.Fatalf("pull %s:%s after load: %v", repo, tag, err)
				}
				m, _ := oci.ParseManifest(rec.MediaType, rec.Payload, digest.SHA256)
				for _, b := range m.Blobs() {
					live[b.Digest] = true
				}
			}
		}
		return live
	}
	live := check()
	// A final pass long after: only what tags reach survives.
	res, err := gc.New(e.store, e.blobs, gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour), Changed: e.reg.Invalidate}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("final pass: %d manifests, %d blobs, %d objects", len(res.Manifests), len(res.Blobs), res.ObjectsGone)
	if got := check(); len(got) != len(live) {
		t.Fatalf("live blobs changed: %d -> %d", len(live), len(got))
	}
	// A scan, not the queue: the queues must have missed nothing.
	if n := e.raw.Count(t, `SELECT COUNT(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest)`); n != 0 {
		t.Fatalf("%d unreferenced blobs left in the database", n)
	}
	objs := objects(t)
	for _, b := range res.Blobs {
		if _, err := e.meta.Blob(ctx, b.Digest); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("collected %s still in the database: %v", b.Digest, err)
		}
		if b.Key == "" || objs[b.Key] {
			t.Errorf("collected %s: object %q still in storage", b.Digest, b.Key)
		}
	}
	liveKeys := map[string]bool{}
	for d := range live {
		info, err := e.meta.Blob(ctx, d)
		if err != nil {
			t.Fatalf("referenced %s: %v", d, err)
		}
		liveKeys[info.Key] = true
		if !objs[info.Key] {
			t.Errorf("referenced %s: object %s deleted", d, info.Key)
		}
	}
	for k := range objs {
		if !liveKeys[k] {
			t.Errorf("unreferenced object left in storage: %s", k)
		}
	}
	if len(objs) != len(live) {
		t.Fatalf("%d objects in storage, %d referenced", len(objs), len(live))
	}
	if p, _ := e.store.PendingBlobDeletionsAfter(ctx, "", 10); len(p) != 0 {
		t.Fatalf("pending deletions left: %v", p)
	}
}

var errRaced = errors.New("tag moved and old manifest collected while pulling")

func pushImage(ctx context.Context, e *env, repo, tag, cfg, layer, shared string) error {
	var ds []digest.Digest
	for _, b := range []string{cfg, layer, shared} {
		d := digest.FromString(b)
		if _, err := e.reg.PutBlob(ctx, repo, d, registry.Chunk{Body: bytes.NewReader([]byte(b)), Start: -1, Length: int64(len(b))}); err != nil {
			return err
		}
		ds = append(ds, d)
	}
	m := image(ds[0], len(cfg), map[digest.Digest]int{ds[1]: len(layer), ds[2]: len(shared)})
	_, err := e.reg.PutManifest(ctx, repo, oci.Reference{Tag: tag}, oci.MediaTypeOCIManifest, m)
	return err
}

// pullImage fetches a tag's manifest and every blob, verifying digests. A
// manifest that disappears midway (its tag moved and GC took it) is
// errRaced, which a client answers by resolving the tag again.
func pullImage(ctx context.Context, e *env, repo, tag string) error {
	rec, err := e.reg.Manifest(ctx, repo, oci.Reference{Tag: tag})
	if errors.Is(err, oci.ErrManifestUnknown) {
		return nil // not pushed yet
	}
	if err != nil {
		return err
	}
	if digest.FromBytes(rec.Payload) != rec.Digest {
		return fmt.Errorf("manifest digest mismatch")
	}
	m, err := oci.ParseManifest(rec.MediaType, rec.Payload, digest.SHA256)
	if err != nil {
		return err
	}
	for _, b := range m.Blobs() {
		_, rc, err := e.reg.OpenBlob(ctx, repo, b.Digest)
		if err != nil {
			if errors.Is(err, oci.ErrBlobUnknown) {
				if _, merr := e.reg.Manifest(ctx, repo, oci.Reference{Digest: rec.Digest}); errors.Is(merr, oci.ErrManifestUnknown) {
					return errRaced
				}
			}
			return fmt.Errorf("blob %s of %s: %w", b.Digest, rec.Digest, err)
		}
		got, err := digest.SHA256.FromReader(rc)
		rc.Close()
		if err != nil || got != b.Digest {
			return fmt.Errorf("blob %s read back as %s (%v)", b.Digest, got, err)
		}
	}
	return nil
}

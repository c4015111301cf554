package gctest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/registry"
)

// testBlobQueue: an upload queues its blob, due once the delay from its
// creation has passed; a review drops the entry of a referenced blob, and
// deleting the manifest queues the blob again. Entries page in
// (ReviewFrom, Digest) order, each once.
func testBlobQueue(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	past := time.Now()
	x := commit(t, s, "a", "x", "").Digest
	if q := blobQueue(t, s, past); len(q) != 0 {
		t.Fatalf("entries due before the upload: %v", q)
	}
	if q := blobQueue(t, s, hourAhead()); !slices.Equal(queued(q), []digest.Digest{x}) || !slices.Equal(garbage(q), []digest.Digest{x}) {
		t.Fatalf("queue after an upload: %+v; want %s, as garbage", q, x)
	}
	m := put(t, s, "a", `{"m":1}`, registry.NewManifest{Blobs: []digest.Digest{x}, Tags: []string{"v1"}})
	if q := blobQueue(t, s, hourAhead()); len(q) != 1 || q[0].Garbage {
		t.Fatalf("queue once a manifest references the blob: %+v; want it listed, not as garbage", q)
	}
	if got, err := s.CollectBlobs(ctx, []digest.Digest{x}, hourAhead()); err != nil || len(got) != 0 {
		t.Fatalf("review of a referenced blob collected %v, %v", got, err)
	}
	if q := blobQueue(t, s, hourAhead()); len(q) != 0 {
		t.Fatalf("a review left the entry of a referenced blob: %+v", q)
	}
	if err := s.DeleteManifest(ctx, "a", m); err != nil {
		t.Fatal(err)
	}
	if g := garbage(blobQueue(t, s, hourAhead())); !slices.Equal(g, []digest.Digest{x}) {
		t.Fatalf("garbage after the manifest's deletion: %v; want %s", g, x)
	}
	ds := []digest.Digest{x}
	for i := range 5 {
		ds = append(ds, commit(t, s, "a", fmt.Sprintf("y%d", i), "").Digest)
	}
	q := blobQueue(t, s, hourAhead())
	if !slices.Equal(queued(q), sorted(ds...)) {
		t.Fatalf("paged queue %v; want each of %v once", queued(q), sorted(ds...))
	}
	for i := 1; i < len(q); i++ {
		if a, b := q[i-1], q[i]; a.ReviewFrom > b.ReviewFrom || a.ReviewFrom == b.ReviewFrom && a.Digest >= b.Digest {
			t.Fatalf("queue out of order at %d: %+v before %+v", i, a, b)
		}
	}
}

// testLinkQueue: linking (mounting) a blob a manifest references neither
// adds nor locks its queue entry (a hot row for a popular base layer
// otherwise); linking an unreferenced one queues it.
func testLinkQueue(t *testing.T, s Store, db DB) {
	ctx := context.Background()
	layer := commit(t, s, "base", "base layer", "").Digest
	put(t, s, "base", `{"base":1}`, registry.NewManifest{Blobs: []digest.Digest{layer}, Tags: []string{"v1"}})
	if _, err := s.CollectBlobs(ctx, []digest.Digest{layer}, hourAhead()); err != nil {
		t.Fatal(err)
	}
	count := func(d digest.Digest) int {
		return db.Count(t, `SELECT COUNT(*) FROM gc_blob_queue WHERE digest = ?`, string(d))
	}
	if n := count(layer); n != 0 {
		t.Fatalf("referenced layer still queued after a review (%d)", n)
	}
	if err := s.LinkBlob(ctx, "app1", layer); err != nil {
		t.Fatal(err)
	}
	if n := count(layer); n != 0 {
		t.Fatalf("link of a referenced blob queued it (%d entries)", n)
	}
	orphan := commit(t, s, "base", "unreferenced", "").Digest
	db.Exec(t, `DELETE FROM gc_blob_queue WHERE digest = ?`, string(orphan))
	if err := s.LinkBlob(ctx, "app1", orphan); err != nil {
		t.Fatal(err)
	}
	if n := count(orphan); n != 1 {
		t.Fatalf("link of an unreferenced blob: %d entries, want 1", n)
	}
	if !db.RowLocks {
		return
	}
	// Another transaction holds the layer's queue row: a link of the
	// layer does not wait for it.
	db.Exec(t, `INSERT INTO gc_blob_queue (digest, review_from) VALUES (?, ?)`, string(layer), int64(1))
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, db.Query(`SELECT 1 FROM gc_blob_queue WHERE digest = ? FOR UPDATE`), string(layer)); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.LinkBlob(lctx, "app2", layer); err != nil {
		t.Fatalf("link while a review holds the queue row: %v", err)
	}
}

// testCollectBlobs: a review of a batch removes exactly the blobs that
// are unreferenced and older than the cut-off, queues their objects for
// deletion and settles the entries; duplicates and unknown digests are
// harmless.
func testCollectBlobs(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	orphan := commit(t, s, "a", "orphan", "")
	kept := commit(t, s, "a", "kept", "")
	put(t, s, "a", `{"kept":1}`, registry.NewManifest{Blobs: []digest.Digest{kept.Digest}, Tags: []string{"v1"}})
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	time.Sleep(2 * time.Millisecond)
	young := commit(t, s, "a", "young", "")
	unknown := digest.FromString("never uploaded")
	got, err := s.CollectBlobs(ctx, []digest.Digest{young.Digest, orphan.Digest, kept.Digest, unknown, orphan.Digest}, cut)
	if err != nil || len(got) != 1 || got[0] != orphan {
		t.Fatalf("collected %+v, %v; want only %+v", got, err, orphan)
	}
	if _, err := s.Blob(ctx, orphan.Digest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("collected blob: %v", err)
	}
	if _, err := s.RepoBlob(ctx, "a", orphan.Digest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("collected blob's link: %v", err)
	}
	if p := pending(t, s); len(p) != 1 || p[0] != (gc.PendingDeletion{Digest: orphan.Digest, Key: orphan.Key}) {
		t.Fatalf("pending deletions %+v; want the orphan's object", p)
	}
	for _, b := range []registry.BlobInfo{kept, young} {
		if _, err := s.Blob(ctx, b.Digest); err != nil {
			t.Fatalf("%s: %v", b.Digest, err)
		}
	}
	// The orphan's entry and the referenced blob's went; the young one's
	// stays, not due at the cut-off.
	if q := blobQueue(t, s, hourAhead()); !slices.Equal(queued(q), []digest.Digest{young.Digest}) {
		t.Fatalf("queue after the review: %v; want %s", queued(q), young.Digest)
	}
	if q := blobQueue(t, s, cut); len(q) != 0 {
		t.Fatalf("due at the cut-off: %v", queued(q))
	}
	if got, err := s.CollectBlobs(ctx, []digest.Digest{orphan.Digest}, hourAhead()); err != nil || len(got) != 0 {
		t.Fatalf("second review of the orphan: %+v, %v", got, err)
	}
	if got, err := s.CollectBlobs(ctx, []digest.Digest{young.Digest}, hourAhead()); err != nil || len(got) != 1 || got[0] != young {
		t.Fatalf("review of the young blob once old: %+v, %v", got, err)
	}
}

// testCollectRechecksTouch: a blob listed as garbage and then touched (an
// upload or a mount of its digest) before its review stays, its entry
// moved past the touch; one a manifest came to reference stays however
// old.
func testCollectRechecksTouch(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	d := commit(t, s, "a", "soon touched", "").Digest
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	if g := garbage(blobQueue(t, s, cut)); !slices.Equal(g, []digest.Digest{d}) {
		t.Fatalf("garbage %v; want %s", g, d)
	}
	time.Sleep(2 * time.Millisecond)
	if err := s.TouchBlob(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CollectBlobs(ctx, []digest.Digest{d}, cut); err != nil || len(got) != 0 {
		t.Fatalf("touched blob collected: %+v, %v", got, err)
	}
	if q := blobQueue(t, s, cut); len(q) != 0 {
		t.Fatalf("entry still due at the cut-off after the touch: %+v", q)
	}
	if q := blobQueue(t, s, hourAhead()); !slices.Equal(queued(q), []digest.Digest{d}) {
		t.Fatalf("queue %v; want the touched blob, later", queued(q))
	}
	if err := s.LinkBlob(ctx, "b", d); err != nil {
		t.Fatal(err)
	}
	put(t, s, "b", `{"b":1}`, registry.NewManifest{Blobs: []digest.Digest{d}, Tags: []string{"v1"}})
	if got, err := s.CollectBlobs(ctx, []digest.Digest{d}, hourAhead()); err != nil || len(got) != 0 {
		t.Fatalf("referenced blob collected: %+v, %v", got, err)
	}
	if _, err := s.Blob(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// collectOne collects the blob of info, failing t unless it goes.
func collectOne(t *testing.T, s Store, info registry.BlobInfo) {
	t.Helper()
	if got, err := s.CollectBlobs(context.Background(), []digest.Digest{info.Digest}, hourAhead()); err != nil || len(got) != 1 {
		t.Fatalf("collect %s: %+v, %v", info.Digest, got, err)
	}
}

func mustNotDelete(key string) error { return fmt.Errorf("%s must not be deleted", key) }

// testSweepLive: a blob collected from the database whose object
// deletion is still queued is uploaded again to the same object (content
// addressed): the sweep leaves the entry while the upload's touch is
// recent, and later drops it without deleting the live object.
func testSweepLive(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	const content, key = "collected then pushed again", "objects/same"
	info := commit(t, s, "a", content, key)
	collectOne(t, s, info)
	if err := s.TouchBlob(ctx, info.Digest); err != nil {
		t.Fatal(err)
	}
	commit(t, s, "a", content, key)
	if n, err := s.FinishBlobDeletions(ctx, []digest.Digest{info.Digest}, time.Now().Add(-time.Minute), mustNotDelete, 2); err != nil || n != 0 {
		t.Fatalf("sweep within the touch's window: %d deleted, %v", n, err)
	}
	if p := pending(t, s); len(p) != 1 {
		t.Fatalf("pending after a sweep within the window: %+v; want the entry left", p)
	}
	if n, err := s.FinishBlobDeletions(ctx, []digest.Digest{info.Digest}, hourAhead(), mustNotDelete, 2); err != nil || n != 0 {
		t.Fatalf("sweep of a live object: %d deleted, %v", n, err)
	}
	if p := pending(t, s); len(p) != 0 {
		t.Fatalf("pending after the sweep: %+v", p)
	}
	if got, err := s.Blob(ctx, info.Digest); err != nil || got.Key != key {
		t.Fatalf("live blob: %+v, %v", got, err)
	}
}

// testSweepReuploaded: a blob uploaded again to another object before the
// sweep: the old object goes, the new one stays.
func testSweepReuploaded(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	old := commit(t, s, "a", "content", "objects/old")
	collectOne(t, s, old)
	if err := s.TouchBlob(ctx, old.Digest); err != nil {
		t.Fatal(err)
	}
	commit(t, s, "a", "content", "objects/new")
	var deleted []string
	n, err := s.FinishBlobDeletions(ctx, []digest.Digest{old.Digest}, hourAhead(), func(k string) error {
		deleted = append(deleted, k)
		return nil
	}, 1)
	if err != nil || n != 1 || !slices.Equal(deleted, []string{"objects/old"}) {
		t.Fatalf("sweep: %d deleted (%v), %v; want objects/old", n, deleted, err)
	}
	if p := pending(t, s); len(p) != 0 {
		t.Fatalf("pending after the sweep: %+v", p)
	}
	if got, err := s.Blob(ctx, old.Digest); err != nil || got.Key != "objects/new" {
		t.Fatalf("re-uploaded blob: %+v, %v", got, err)
	}
}

// testSweepFailures: a batch sweep runs at most workers deletions at
// once; a failed deletion stays queued, its error returned, and a later
// sweep finishes it.
func testSweepFailures(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	var ds []digest.Digest
	for i := range 6 {
		ds = append(ds, commit(t, s, "a", fmt.Sprintf("sweep %d", i), "").Digest)
	}
	if got, err := s.CollectBlobs(ctx, ds, hourAhead()); err != nil || len(got) != len(ds) {
		t.Fatalf("collect: %d, %v", len(got), err)
	}
	p := pending(t, s)
	if len(p) != len(ds) {
		t.Fatalf("pending %+v; want %d", p, len(ds))
	}
	fail := p[0].Key
	var (
		mu            sync.Mutex
		running, most int
	)
	n, err := s.FinishBlobDeletions(ctx, ds, hourAhead(), func(k string) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		if k == fail {
			return errors.New("storage unavailable")
		}
		return nil
	}, 2)
	if n != len(ds)-1 || err == nil || !strings.Contains(err.Error(), fail) || !strings.Contains(err.Error(), "storage unavailable") {
		t.Fatalf("sweep: %d deleted, %v; want %d and the failure of %s", n, err, len(ds)-1, fail)
	}
	if most > 2 {
		t.Fatalf("%d deletions at once; want at most 2", most)
	}
	if p := pending(t, s); len(p) != 1 || p[0].Key != fail {
		t.Fatalf("pending after the sweep: %+v; want only %s", p, fail)
	}
	if n, err := s.FinishBlobDeletions(ctx, ds, hourAhead(), func(string) error { return nil }, 2); err != nil || n != 1 {
		t.Fatalf("second sweep: %d deleted, %v; want 1", n, err)
	}
	if p := pending(t, s); len(p) != 0 {
		t.Fatalf("pending after the second sweep: %+v", p)
	}
}

// testForgetReviews: review rows whose touch is older than the cut-off go
// unless they queue a deletion.
func testForgetReviews(t *testing.T, s Store, db DB) {
	ctx := context.Background()
	a := commit(t, s, "a", "a", "")
	b := commit(t, s, "a", "b", "")
	past := time.Now()
	time.Sleep(2 * time.Millisecond)
	for _, d := range []digest.Digest{a.Digest, b.Digest} {
		if err := s.TouchBlob(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.ForgetReviews(ctx, past); err != nil || n != 0 {
		t.Fatalf("forgot %d recent touches, %v", n, err)
	}
	if got, err := s.CollectBlobs(ctx, []digest.Digest{b.Digest}, hourAhead()); err != nil || len(got) != 1 {
		t.Fatalf("collect: %+v, %v", got, err)
	}
	if n, err := s.ForgetReviews(ctx, hourAhead()); err != nil || n != 1 {
		t.Fatalf("forgot %d reviews, %v; want 1 (the one queueing a deletion stays)", n, err)
	}
	if n := db.Count(t, `SELECT COUNT(*) FROM gc_blob_reviews`); n != 1 {
		t.Fatalf("%d review rows left; want 1", n)
	}
	if p := pending(t, s); len(p) != 1 || p[0].Digest != b.Digest {
		t.Fatalf("pending %+v; want %s", p, b.Digest)
	}
}

package gctest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// manifestQueue lists the manifest queue entries due before before.
func manifestQueue(t *testing.T, s Store, before time.Time) []gc.QueuedManifest {
	t.Helper()
	return all(t, func(after gc.QueuedManifest) ([]gc.QueuedManifest, error) {
		return s.UntaggedCandidatesAfter(context.Background(), before, after, 2)
	})
}

// refs is the refs of es (only those listed as garbage, with
// garbageOnly), sorted.
func refs(es []gc.QueuedManifest, garbageOnly bool) []gc.ManifestRef {
	var out []gc.ManifestRef
	for _, e := range es {
		if e.Garbage || !garbageOnly {
			out = append(out, e.ManifestRef)
		}
	}
	slices.SortFunc(out, compareRefs)
	return out
}

func refsIn(repo string, ds ...digest.Digest) []gc.ManifestRef {
	out := make([]gc.ManifestRef, len(ds))
	for i, d := range ds {
		out[i] = gc.ManifestRef{Repo: repo, Digest: d}
	}
	slices.SortFunc(out, compareRefs)
	return out
}

func compareRefs(a, b gc.ManifestRef) int {
	if c := strings.Compare(a.Repo, b.Repo); c != 0 {
		return c
	}
	return strings.Compare(string(a.Digest), string(b.Digest))
}

// testManifestQueue: a push by digest, a tag moved or deleted queues the
// manifest left untagged; only the untagged, unkept one is listed as
// garbage; settling drops, in one batch, the entries of manifests that
// are tagged, deleted, children of an index or referrers of a live
// subject, and keeps the untagged one's.
func testManifestQueue(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	l := commit(t, s, "k", "keep layer", "").Digest
	tagged := put(t, s, "k", `{"tagged later":1}`, registry.NewManifest{Blobs: []digest.Digest{l}})
	put(t, s, "k", `{"tagged later":1}`, registry.NewManifest{Blobs: []digest.Digest{l}, Tags: []string{"v1"}})
	untagged := put(t, s, "k", `{"tag deleted":1}`, registry.NewManifest{Blobs: []digest.Digest{l}, Tags: []string{"old"}})
	if err := s.DeleteTag(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	gone := put(t, s, "k", `{"deleted":1}`, registry.NewManifest{Blobs: []digest.Digest{l}})
	if err := s.DeleteManifest(ctx, "k", gone); err != nil {
		t.Fatal(err)
	}
	child := put(t, s, "k", `{"child":1}`, registry.NewManifest{Blobs: []digest.Digest{l}})
	put(t, s, "k", `{"index":1}`, registry.NewManifest{Record: registry.ManifestRecord{MediaType: oci.MediaTypeOCIIndex},
		Children: []digest.Digest{child}, Tags: []string{"multi"}})
	referrer := put(t, s, "k", `{"signature":1}`, registry.NewManifest{Record: registry.ManifestRecord{Subject: tagged}})

	if q := manifestQueue(t, s, time.Now().Add(-time.Hour)); len(q) != 0 {
		t.Fatalf("entries due before the pushes: %+v", q)
	}
	q := manifestQueue(t, s, hourAhead())
	if want := refsIn("k", tagged, untagged, gone, child, referrer); !slices.Equal(refs(q, false), want) {
		t.Fatalf("queued %v; want %v", refs(q, false), want)
	}
	if g := refs(q, true); !slices.Equal(g, refsIn("k", untagged)) {
		t.Fatalf("garbage %v; want %s", g, untagged)
	}
	for i := 1; i < len(q); i++ {
		if a, b := q[i-1], q[i]; a.ReviewFrom > b.ReviewFrom || a.ReviewFrom == b.ReviewFrom && compareRefs(a.ManifestRef, b.ManifestRef) >= 0 {
			t.Fatalf("queue out of order at %d: %+v before %+v", i, a, b)
		}
	}
	var settle []gc.ManifestRef
	for _, e := range q {
		if !e.Garbage {
			settle = append(settle, e.ManifestRef)
		}
	}
	if n, err := s.SettleManifests(ctx, append(settle, settle[0])); err != nil || n != 4 {
		t.Fatalf("settled %d, %v; want the 4 entries that need no review", n, err)
	}
	if n, err := s.SettleManifests(ctx, refsIn("k", untagged)); err != nil || n != 0 {
		t.Fatalf("settled the untagged manifest's entry (%d, %v)", n, err)
	}
	if got := refs(manifestQueue(t, s, hourAhead()), false); !slices.Equal(got, refsIn("k", untagged)) {
		t.Fatalf("queued after settling: %v; want %s", got, untagged)
	}
}

// testCollectManifest: an untagged manifest goes only once old enough
// (its entry stays until then), a tagged one never; a deleted manifest's
// blobs, children and referrers are queued.
func testCollectManifest(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	u := commit(t, s, "r", "untagged layer", "").Digest
	shared := commit(t, s, "r", "shared layer", "").Digest
	c := commit(t, s, "r", "child layer", "").Digest
	untagged := put(t, s, "r", `{"untagged":1}`, registry.NewManifest{Blobs: []digest.Digest{u, shared}})
	tagged := put(t, s, "r", `{"tagged":1}`, registry.NewManifest{Blobs: []digest.Digest{shared}, Tags: []string{"v1"}})
	child := put(t, s, "r", `{"child":1}`, registry.NewManifest{Blobs: []digest.Digest{c}})
	index := put(t, s, "r", `{"index":1}`, registry.NewManifest{Record: registry.ManifestRecord{MediaType: oci.MediaTypeOCIIndex},
		Children: []digest.Digest{child}})
	referrer := put(t, s, "r", `{"signature":1}`, registry.NewManifest{Record: registry.ManifestRecord{Subject: untagged}})
	// The uploads' entries, reviewed: all referenced, all dropped.
	if got, err := s.CollectBlobs(ctx, []digest.Digest{u, shared, c}, hourAhead()); err != nil || len(got) != 0 {
		t.Fatalf("referenced blobs collected: %+v, %v", got, err)
	}
	ref := func(d digest.Digest) gc.ManifestRef { return gc.ManifestRef{Repo: "r", Digest: d} }
	collect := func(d digest.Digest, before time.Time, want bool) {
		t.Helper()
		if ok, err := s.CollectManifest(ctx, ref(d), before); err != nil || ok != want {
			t.Fatalf("collect %s: %v, %v; want %v", d, ok, err, want)
		}
	}
	collect(untagged, time.Now().Add(-time.Hour), false)
	if q := refs(manifestQueue(t, s, hourAhead()), false); !slices.Contains(q, ref(untagged)) {
		t.Fatalf("queued %v: the too young manifest's entry went", q)
	}
	collect(tagged, hourAhead(), false)
	collect(untagged, hourAhead(), true)
	if _, err := s.Manifest(ctx, "r", oci.Reference{Digest: untagged}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("collected manifest: %v", err)
	}
	bq := blobQueue(t, s, hourAhead())
	if !slices.Equal(queued(bq), sorted(u, shared)) || !slices.Equal(garbage(bq), []digest.Digest{u}) {
		t.Fatalf("blob queue %+v; want %s (garbage) and %s (still referenced)", bq, u, shared)
	}
	// Its referrer, no longer kept by a live subject, is garbage now; the
	// index's child is kept until the index goes.
	collect(child, hourAhead(), false)
	if g := refs(manifestQueue(t, s, hourAhead()), true); !slices.Equal(g, refsIn("r", index, referrer)) {
		t.Fatalf("garbage manifests %v; want the index and the referrer", g)
	}
	collect(index, hourAhead(), true)
	if g := refs(manifestQueue(t, s, hourAhead()), true); !slices.Equal(g, refsIn("r", child, referrer)) {
		t.Fatalf("garbage manifests %v; want the child and the referrer", g)
	}
	collect(child, hourAhead(), true)
	collect(child, hourAhead(), false) // gone already
	if g := garbage(blobQueue(t, s, hourAhead())); !slices.Equal(g, sorted(u, c)) {
		t.Fatalf("garbage blobs %v; want %v", g, sorted(u, c))
	}
	if _, err := s.Manifest(ctx, "r", oci.Reference{Tag: "v1"}); err != nil {
		t.Fatalf("tagged manifest: %v", err)
	}
}

// testBlobsFreedBy: what deleting a set of manifests would leave
// unreferenced, old and untouched enough to collect with them.
func testBlobsFreedBy(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	a := commit(t, s, "r", "a", "").Digest
	b := commit(t, s, "r", "b", "").Digest
	sh := commit(t, s, "r", "shared", "").Digest
	ma := put(t, s, "r", `{"a":1}`, registry.NewManifest{Blobs: []digest.Digest{a, sh}})
	mb := put(t, s, "r", `{"b":1}`, registry.NewManifest{Blobs: []digest.Digest{b, sh}})
	freed := func(before time.Time, ds ...digest.Digest) []digest.Digest {
		t.Helper()
		got, err := s.BlobsFreedBy(ctx, refsIn("r", ds...), before)
		if err != nil {
			t.Fatal(err)
		}
		return sorted(got...)
	}
	if got := freed(hourAhead(), ma); !slices.Equal(got, []digest.Digest{a}) {
		t.Fatalf("freed by %s: %v; want %s", ma, got, a)
	}
	if got := freed(hourAhead(), ma, mb); !slices.Equal(got, sorted(a, b, sh)) {
		t.Fatalf("freed by both: %v; want all three", got)
	}
	if got := freed(time.Now().Add(-time.Hour), ma, mb); len(got) != 0 {
		t.Fatalf("freed before the uploads: %v", got)
	}
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	time.Sleep(2 * time.Millisecond)
	if err := s.TouchBlob(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := freed(cut, ma, mb); !slices.Equal(got, sorted(a, sh)) {
		t.Fatalf("freed with %s touched: %v; want %v", b, got, sorted(a, sh))
	}
}

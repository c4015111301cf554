package gctest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
)

// testRescan: garbage written without queue entries (a replica older
// than the queues) is queued by a rescan, which leaves out what a tag, an
// index or a live subject keeps, counts without changing anything when
// asked to, crosses page boundaries, and queues nothing new the second
// time. Entries are due from the rows' creation.
func testRescan(t *testing.T, s Store, db DB) {
	ctx := context.Background()
	old := Legacy{DB: db, Repo: "up/app", At: time.Now().Add(-time.Hour).UnixNano()}
	old.Repository(t)
	blob := func(content string) digest.Digest {
		d := digest.FromString(content)
		old.Blob(t, d, len(content), "legacy/"+d.Encoded())
		return d
	}
	kept := blob("kept layer")
	orphan := blob("orphan layer")
	untaggedLayer := blob("untagged layer")
	tagged := old.Manifest(t, `{"tagged":1}`, "v1", "", nil, kept)
	untagged := old.Manifest(t, `{"untagged":1}`, "", "", nil, untaggedLayer)
	child := old.Manifest(t, `{"child":1}`, "", "", nil, kept)
	old.Manifest(t, `{"index":1}`, "multi", "", []digest.Digest{child})
	old.Manifest(t, `{"signature":1}`, "", tagged, nil)
	empty := func(when string) {
		t.Helper()
		if b, m := blobQueue(t, s, hourAhead()), manifestQueue(t, s, hourAhead()); len(b)+len(m) != 0 {
			t.Fatalf("%s: queued %+v and %+v", when, b, m)
		}
	}
	empty("before the rescan")
	if r, err := s.Rescan(ctx, 1, true); err != nil || r != (gc.Rescanned{Blobs: 1, Manifests: 1}) {
		t.Fatalf("counting rescan: %+v, %v; want 1 blob, 1 manifest", r, err)
	}
	empty("after a counting rescan")
	// Pages of one row: every page boundary is crossed.
	if r, err := s.Rescan(ctx, 1, false); err != nil || r != (gc.Rescanned{Blobs: 1, Manifests: 1}) {
		t.Fatalf("rescan: %+v, %v; want the orphan and the untagged manifest queued", r, err)
	}
	bq, mq := blobQueue(t, s, hourAhead()), manifestQueue(t, s, hourAhead())
	if !slices.Equal(garbage(bq), []digest.Digest{orphan}) || len(bq) != 1 {
		t.Fatalf("blobs queued %+v; want only %s, as garbage", bq, orphan)
	}
	if g := refs(mq, true); len(mq) != 1 || !slices.Equal(g, refsIn(old.Repo, untagged)) {
		t.Fatalf("manifests queued %+v; want only %s, as garbage", mq, untagged)
	}
	at := time.Unix(0, old.At)
	if b, m := blobQueue(t, s, at), manifestQueue(t, s, at); len(b)+len(m) != 0 {
		t.Fatalf("due at the rows' creation: %+v, %+v", b, m)
	}
	for _, page := range []int{0, 1} {
		if r, err := s.Rescan(ctx, page, false); err != nil || r != (gc.Rescanned{}) {
			t.Fatalf("second rescan (pages of %d): %+v, %v; want nothing new", page, r, err)
		}
	}
}

// testLease: one holder at a time; a released or expired lease passes on.
func testLease(t *testing.T, s Store, _ DB) {
	ctx := context.Background()
	ok1, err1 := s.AcquireLease(ctx, "m", "a", time.Minute)
	ok2, err2 := s.AcquireLease(ctx, "m", "b", time.Minute)
	ok3, err3 := s.AcquireLease(ctx, "m", "a", time.Minute)
	if !ok1 || ok2 || !ok3 || errors.Join(err1, err2, err3) != nil {
		t.Fatalf("acquire: a %v, b %v, a again %v (%v %v %v)", ok1, ok2, ok3, err1, err2, err3)
	}
	if ok, err := s.AcquireLease(ctx, "other", "b", time.Minute); !ok || err != nil {
		t.Fatalf("another lease: %v %v", ok, err)
	}
	if err := s.ReleaseLease(ctx, "m", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireLease(ctx, "m", "b", time.Minute); ok || err != nil {
		t.Fatalf("after a release by a non-holder: %v %v", ok, err)
	}
	if err := s.ReleaseLease(ctx, "m", "a"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireLease(ctx, "m", "b", time.Millisecond); !ok || err != nil {
		t.Fatalf("after release: %v %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond)
	if ok, err := s.AcquireLease(ctx, "m", "a", time.Minute); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
}

// Package gctest is the contract a gc.Store must meet: the queue, review,
// sweep, rescan and lease queries a collection pass builds on, each
// checked on a real database. The SQLite and PostgreSQL stores both run
// it; package gc's own tests check the passes built on them.
package gctest

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Store is a metadata store that is also the collector's.
type Store interface {
	registry.MetadataStore
	registry.BlobToucher
	gc.Store
}

// DB reaches a store's database with plain SQL ('?' placeholders): to
// write as a replica from before the review queues did, and to look at
// the queues themselves.
type DB struct {
	*sql.DB
	Numbered bool // PostgreSQL: $n placeholders
	RowLocks bool // the engine locks rows (SELECT … FOR UPDATE)
}

// Query is q with the placeholders of d's engine.
func (d DB) Query(q string) string {
	if !d.Numbered {
		return q
	}
	for i := 1; strings.Contains(q, "?"); i++ {
		q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
	}
	return q
}

// Exec runs q, failing t on an error.
func (d DB) Exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := d.ExecContext(context.Background(), d.Query(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// Count is the single integer q selects.
func (d DB) Count(t testing.TB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), d.Query(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// Run runs the contract against fresh, empty stores made by newStore,
// each with plain SQL access to its database.
func Run(t *testing.T, newStore func(t *testing.T) (Store, DB)) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, s Store, db DB)
	}{
		{"BlobQueue", testBlobQueue},
		{"LinkQueuesOnlyUnreferenced", testLinkQueue},
		{"CollectBlobs", testCollectBlobs},
		{"CollectRechecksTouch", testCollectRechecksTouch},
		{"SweepLiveObject", testSweepLive},
		{"SweepReuploaded", testSweepReuploaded},
		{"SweepFailures", testSweepFailures},
		{"ForgetReviews", testForgetReviews},
		{"ManifestQueue", testManifestQueue},
		{"CollectManifest", testCollectManifest},
		{"BlobsFreedBy", testBlobsFreedBy},
		{"Rescan", testRescan},
		{"Lease", testLease},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, db := newStore(t)
			c.fn(t, s, db)
		})
	}
}

// Legacy writes rows as a replica from before the review queues did: no
// queue entries, every row created at At (Unix nanoseconds).
type Legacy struct {
	DB   DB
	Repo string
	At   int64
}

// Repository records l.Repo.
func (l Legacy) Repository(t testing.TB) {
	t.Helper()
	l.DB.Exec(t, `INSERT INTO repositories (name, created_at) VALUES (?, ?)`, l.Repo, l.At)
}

// Blob records blob d of size bytes at key, linked to l.Repo.
func (l Legacy) Blob(t testing.TB, d digest.Digest, size int, key string) {
	t.Helper()
	l.DB.Exec(t, `INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?)`, string(d), size, key, l.At)
	l.DB.Exec(t, `INSERT INTO repository_blobs (repo, digest, created_at) VALUES (?, ?, ?)`, l.Repo, string(d), l.At)
}

// Manifest records a manifest named by payload, tagged tag ("" none),
// with its subject, children and blobs, and returns its digest.
func (l Legacy) Manifest(t testing.TB, payload, tag string, subject digest.Digest, children []digest.Digest, blobs ...digest.Digest) digest.Digest {
	t.Helper()
	d := digest.FromString(payload)
	sub := sql.NullString{String: string(subject), Valid: subject != ""}
	l.DB.Exec(t, `INSERT INTO manifests (repo, digest, media_type, subject, payload, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		l.Repo, string(d), oci.MediaTypeOCIManifest, sub, []byte(payload), len(payload), l.At)
	for _, b := range blobs {
		l.DB.Exec(t, `INSERT INTO manifest_blobs (repo, manifest_digest, blob_digest) VALUES (?, ?, ?)`, l.Repo, string(d), string(b))
	}
	for _, c := range children {
		l.DB.Exec(t, `INSERT INTO manifest_children (repo, parent_digest, child_digest) VALUES (?, ?, ?)`, l.Repo, string(d), string(c))
	}
	if tag != "" {
		l.DB.Exec(t, `INSERT INTO tags (repo, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)`, l.Repo, tag, string(d), l.At)
	}
	return d
}

// hour ahead: a cut-off everything written so far is older than.
func hourAhead() time.Time { return time.Now().Add(time.Hour) }

// Commit records blob content in repo through an upload session on m, its
// object at key ("" a key of the upload's own), and returns it.
func Commit(t testing.TB, m registry.MetadataStore, repo, content, key string) registry.BlobInfo {
	t.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("u-%d", time.Now().UnixNano())
	if key == "" {
		key = "key/" + id
	}
	u := &registry.Upload{ID: id, Repo: repo, HashAlg: digest.SHA256, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := m.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	info, err := m.CommitUpload(ctx, id, registry.BlobInfo{Digest: digest.FromString(content), Size: int64(len(content)), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Put stores on m a manifest named by payload (an OCI image manifest
// unless m.Record says otherwise) and returns its digest.
func Put(t testing.TB, m registry.MetadataStore, repo, payload string, nm registry.NewManifest) digest.Digest {
	t.Helper()
	d := digest.FromString(payload)
	nm.Record.Digest, nm.Record.Payload = d, []byte(payload)
	if nm.Record.MediaType == "" {
		nm.Record.MediaType = oci.MediaTypeOCIManifest
	}
	if err := m.PutManifest(context.Background(), repo, nm); err != nil {
		t.Fatal(err)
	}
	return d
}

func commit(t *testing.T, s Store, repo, content, key string) registry.BlobInfo {
	t.Helper()
	return Commit(t, s, repo, content, key)
}

func put(t *testing.T, s Store, repo, payload string, m registry.NewManifest) digest.Digest {
	t.Helper()
	return Put(t, s, repo, payload, m)
}

// all pages through a listing two entries at a time (so every cursor is
// crossed), each page after the last entry of the one before.
func all[E any](t *testing.T, list func(after E) ([]E, error)) []E {
	t.Helper()
	var out []E
	var after E
	for range 1000 {
		page, err := list(after)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1]
	}
	t.Fatal("listing does not end")
	return nil
}

// blobQueue lists the blob queue entries due before before.
func blobQueue(t *testing.T, s Store, before time.Time) []gc.QueuedBlob {
	t.Helper()
	return all(t, func(after gc.QueuedBlob) ([]gc.QueuedBlob, error) {
		return s.BlobCandidatesAfter(context.Background(), before, after, 2)
	})
}

// garbage is the digests of the entries listed as garbage, sorted.
func garbage(es []gc.QueuedBlob) []digest.Digest {
	return digestsWhere(es, func(e gc.QueuedBlob) bool { return e.Garbage })
}

// queued is the digests of es, sorted.
func queued(es []gc.QueuedBlob) []digest.Digest {
	return digestsWhere(es, func(gc.QueuedBlob) bool { return true })
}

func digestsWhere(es []gc.QueuedBlob, keep func(gc.QueuedBlob) bool) []digest.Digest {
	var out []digest.Digest
	for _, e := range es {
		if keep(e) {
			out = append(out, e.Digest)
		}
	}
	slices.Sort(out)
	return out
}

// pending lists every queued storage deletion.
func pending(t *testing.T, s Store) []gc.PendingDeletion {
	t.Helper()
	return all(t, func(after gc.PendingDeletion) ([]gc.PendingDeletion, error) {
		return s.PendingBlobDeletionsAfter(context.Background(), after.Digest, 2)
	})
}

func sorted(ds ...digest.Digest) []digest.Digest {
	out := slices.Clone(ds)
	slices.Sort(out)
	return out
}

// DigestsOf is the digests of bs, sorted.
func DigestsOf(bs []registry.BlobInfo) []digest.Digest {
	out := make([]digest.Digest, len(bs))
	for i, b := range bs {
		out[i] = b.Digest
	}
	slices.Sort(out)
	return out
}

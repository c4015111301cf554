// Package metadatatest is the contract every registry.MetadataStore must
// meet; the SQLite and PostgreSQL stores both run it.
package metadatatest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Run runs the contract against fresh, empty stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) registry.MetadataStore) {
	t.Run("Blobs", func(t *testing.T) { testBlobs(t, newStore(t)) })
	t.Run("CommitDeduplicates", func(t *testing.T) { testDedupe(t, newStore(t)) })
	t.Run("Manifests", func(t *testing.T) { testManifests(t, newStore(t)) })
	t.Run("MissingReferences", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("TagsAndCatalog", func(t *testing.T) { testListing(t, newStore(t)) })
	t.Run("Referrers", func(t *testing.T) { testReferrers(t, newStore(t)) })
	t.Run("Uploads", func(t *testing.T) { testUploads(t, newStore(t)) })
	t.Run("ConcurrentUploadUpdates", func(t *testing.T) { testUploadCAS(t, newStore(t)) })
}

func dg(s string) digest.Digest { return digest.FromString(s) }

// commitBlob stores blob content named s in repo through an upload session.
func commitBlob(t *testing.T, m registry.MetadataStore, repo, s string) registry.BlobInfo {
	t.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("u-%s-%s-%d", repo, s, time.Now().UnixNano())
	u := &registry.Upload{ID: id, Repo: repo, HashAlg: digest.SHA256, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := m.CreateUpload(ctx, u); err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	info, err := m.CommitUpload(ctx, id, registry.BlobInfo{Digest: dg(s), Size: int64(len(s)), Key: "key/" + id})
	if err != nil {
		t.Fatalf("CommitUpload: %v", err)
	}
	return info
}

func testBlobs(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	if _, err := m.RepoBlob(ctx, "a", dg("x")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("RepoBlob(missing) = %v", err)
	}
	info := commitBlob(t, m, "a", "x")
	got, err := m.RepoBlob(ctx, "a", dg("x"))
	if err != nil || got != info {
		t.Fatalf("RepoBlob = %+v, %v; want %+v", got, err, info)
	}
	if _, err := m.RepoBlob(ctx, "b", dg("x")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("RepoBlob in another repo = %v, want ErrNotFound", err)
	}
	if err := m.LinkBlob(ctx, "b", dg("x")); err != nil {
		t.Fatalf("LinkBlob: %v", err)
	}
	if err := m.LinkBlob(ctx, "b", dg("nothing")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("LinkBlob(unknown) = %v, want ErrNotFound", err)
	}
	repos, err := m.ReposWithBlob(ctx, dg("x"), 10)
	if err != nil || !reflect.DeepEqual(repos, []string{"a", "b"}) {
		t.Fatalf("ReposWithBlob = %v, %v", repos, err)
	}
	if err := m.UnlinkBlob(ctx, "a", dg("x")); err != nil {
		t.Fatalf("UnlinkBlob: %v", err)
	}
	if err := m.UnlinkBlob(ctx, "a", dg("x")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second UnlinkBlob = %v, want ErrNotFound", err)
	}
	if _, err := m.Blob(ctx, dg("x")); err != nil {
		t.Fatalf("Blob after unlink from one repo: %v", err)
	}
	// The last link gone, the blob is no longer served by digest (its
	// signed URLs stop working) though its row waits for GC.
	if err := m.UnlinkBlob(ctx, "b", dg("x")); err != nil {
		t.Fatalf("UnlinkBlob: %v", err)
	}
	if _, err := m.Blob(ctx, dg("x")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Blob after its last link went = %v, want ErrNotFound", err)
	}
}

func testDedupe(t *testing.T, m registry.MetadataStore) {
	first := commitBlob(t, m, "a", "same")
	second := commitBlob(t, m, "b", "same")
	if second.Key != first.Key {
		t.Fatalf("second commit of the same digest recorded key %q, want the first's %q", second.Key, first.Key)
	}
	if _, err := m.CommitUpload(context.Background(), "no-such-upload", registry.BlobInfo{Digest: dg("z"), Key: "k"}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("CommitUpload(unknown session) = %v", err)
	}
}

func manifest(payload string, blobs ...digest.Digest) registry.NewManifest {
	return registry.NewManifest{
		Record: registry.ManifestRecord{Digest: dg(payload), MediaType: oci.MediaTypeOCIManifest, Payload: []byte(payload)},
		Blobs:  blobs,
	}
}

func testManifests(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	commitBlob(t, m, "r", "cfg")
	nm := manifest("m1", dg("cfg"))
	nm.Tags = []string{"v1"}
	nm.Record.Annotations = map[string]string{"k": "v"}
	if err := m.PutManifest(ctx, "r", nm); err != nil {
		t.Fatalf("PutManifest: %v", err)
	}
	// Idempotent.
	if err := m.PutManifest(ctx, "r", nm); err != nil {
		t.Fatalf("second PutManifest: %v", err)
	}
	for _, ref := range []oci.Reference{{Tag: "v1"}, {Digest: dg("m1")}} {
		rec, err := m.Manifest(ctx, "r", ref)
		if err != nil || string(rec.Payload) != "m1" || rec.Digest != dg("m1") || rec.Annotations["k"] != "v" {
			t.Fatalf("Manifest(%s) = %+v, %v", ref, rec, err)
		}
	}
	// Moving a tag.
	commitBlob(t, m, "r", "cfg2")
	nm2 := manifest("m2", dg("cfg2"))
	nm2.Tags = []string{"v1"}
	if err := m.PutManifest(ctx, "r", nm2); err != nil {
		t.Fatal(err)
	}
	if rec, _ := m.Manifest(ctx, "r", oci.Reference{Tag: "v1"}); rec.Digest != dg("m2") {
		t.Fatalf("tag did not move: %s", rec.Digest)
	}
	// Delete a tag: the manifest stays.
	if err := m.DeleteTag(ctx, "r", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteTag(ctx, "r", "v1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteTag = %v", err)
	}
	if _, err := m.Manifest(ctx, "r", oci.Reference{Digest: dg("m2")}); err != nil {
		t.Fatalf("manifest gone with its tag: %v", err)
	}
	// Delete a manifest: its tags go too.
	nm.Tags = []string{"t1"}
	if err := m.PutManifest(ctx, "r", nm); err != nil {
		t.Fatal(err)
	}
	nm.Tags = []string{"t2"}
	if err := m.PutManifest(ctx, "r", nm); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteManifest(ctx, "r", dg("m1")); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []oci.Reference{{Tag: "t1"}, {Tag: "t2"}, {Digest: dg("m1")}} {
		if _, err := m.Manifest(ctx, "r", ref); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("Manifest(%s) after delete = %v", ref, err)
		}
	}
	if err := m.DeleteManifest(ctx, "r", dg("m1")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteManifest = %v", err)
	}
}

func testMissing(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	commitBlob(t, m, "r", "have")
	commitBlob(t, m, "other", "elsewhere")
	nm := manifest("m", dg("have"), dg("missing"), dg("elsewhere"))
	nm.Children = []digest.Digest{dg("child")}
	nm.Tags = []string{"t"}
	err := m.PutManifest(ctx, "r", nm)
	var missing *registry.MissingReferencesError
	if !errors.As(err, &missing) {
		t.Fatalf("PutManifest with missing refs = %v", err)
	}
	if !reflect.DeepEqual(missing.Blobs, []digest.Digest{dg("missing"), dg("elsewhere")}) || !reflect.DeepEqual(missing.Manifests, []digest.Digest{dg("child")}) {
		t.Fatalf("missing = %+v", missing)
	}
	if _, err := m.Manifest(ctx, "r", oci.Reference{Tag: "t"}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a refused manifest left a tag: %v", err)
	}
	if _, err := m.Manifest(ctx, "r", oci.Reference{Digest: dg("m")}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a refused manifest was stored: %v", err)
	}
}

func testListing(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	if _, err := m.Tags(ctx, "nope", "", -1); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Tags(unknown repo) = %v", err)
	}
	commitBlob(t, m, "r", "c")
	for _, tag := range []string{"b", "a", "c", "d"} {
		nm := manifest("m", dg("c"))
		nm.Tags = []string{tag}
		if err := m.PutManifest(ctx, "r", nm); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		last string
		n    int
		want []string
	}{
		{"", -1, []string{"a", "b", "c", "d"}},
		{"", 2, []string{"a", "b"}},
		{"b", 2, []string{"c", "d"}},
		{"d", 2, []string{}},
		{"", 0, []string{}},
	} {
		got, err := m.Tags(ctx, "r", c.last, c.n)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Tags(last=%q, n=%d) = %v, %v; want %v", c.last, c.n, got, err, c.want)
		}
	}
	commitBlob(t, m, "a/b", "c")
	commitBlob(t, m, "z", "c")
	repos, err := m.Repositories(ctx, "", -1)
	if err != nil || !reflect.DeepEqual(repos, []string{"a/b", "r", "z"}) {
		t.Fatalf("Repositories = %v, %v", repos, err)
	}
	repos, err = m.Repositories(ctx, "a/b", 1)
	if err != nil || !reflect.DeepEqual(repos, []string{"r"}) {
		t.Fatalf("Repositories(after a/b, 1) = %v, %v", repos, err)
	}
}

func testReferrers(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	commitBlob(t, m, "r", "c")
	subject := dg("subject")
	for i, at := range []string{"application/sbom", "application/sig"} {
		nm := manifest(fmt.Sprintf("ref%d", i), dg("c"))
		nm.Record.Subject = subject
		nm.Record.ArtifactType = at
		nm.Record.Annotations = map[string]string{"n": fmt.Sprint(i)}
		if err := m.PutManifest(ctx, "r", nm); err != nil {
			t.Fatal(err)
		}
	}
	refs, err := m.Referrers(ctx, "r", subject)
	if err != nil || len(refs) != 2 {
		t.Fatalf("Referrers = %v, %v", refs, err)
	}
	for _, d := range refs {
		if d.MediaType != oci.MediaTypeOCIManifest || d.Size != 4 || d.ArtifactType == "" || d.Annotations["n"] == "" {
			t.Errorf("referrer descriptor %+v incomplete", d)
		}
	}
	if refs, _ := m.Referrers(ctx, "other", subject); len(refs) != 0 {
		t.Fatalf("referrers leaked across repositories: %v", refs)
	}
}

func testUploads(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	u := &registry.Upload{ID: "up1", Repo: "r", HashAlg: digest.SHA256, HashState: []byte{1, 2}, Backend: []byte("b"), CreatedAt: old, UpdatedAt: old}
	if err := m.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := m.Upload(ctx, "r", "up1")
	if err != nil || got.Offset != 0 || string(got.HashState) != "\x01\x02" || string(got.Backend) != "b" {
		t.Fatalf("Upload = %+v, %v", got, err)
	}
	if _, err := m.Upload(ctx, "other", "up1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Upload through another repository = %v, want ErrNotFound", err)
	}
	exp, err := m.ExpiredUploads(ctx, time.Now().Add(-24*time.Hour), 10)
	if err != nil || len(exp) != 1 || exp[0].ID != "up1" {
		t.Fatalf("ExpiredUploads = %v, %v", exp, err)
	}
	u.Offset, u.HashState, u.UpdatedAt = 10, []byte{3}, time.Now()
	if err := m.UpdateUpload(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateUpload(ctx, u, 0); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("stale UpdateUpload = %v, want ErrConflict", err)
	}
	if exp, _ := m.ExpiredUploads(ctx, time.Now().Add(-24*time.Hour), 10); len(exp) != 0 {
		t.Fatalf("an updated upload is still expired: %v", exp)
	}
	if err := m.DeleteUpload(ctx, "up1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Upload(ctx, "r", "up1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Upload after delete = %v", err)
	}
	// Only one deleter wins: it owns the session's storage.
	if err := m.DeleteUpload(ctx, "up1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteUpload = %v, want ErrNotFound", err)
	}
}

// testUploadCAS: of many writers advancing one session from the same
// offset, exactly one wins.
func testUploadCAS(t *testing.T, m registry.MetadataStore) {
	ctx := context.Background()
	u := &registry.Upload{ID: "cas", Repo: "r", HashAlg: digest.SHA256, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := m.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Go(func() {
			c := *u
			c.Offset = int64(100 + i)
			err := m.UpdateUpload(ctx, &c, 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, registry.ErrConflict):
				t.Errorf("UpdateUpload: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent updates from one offset succeeded, want 1", wins)
	}
}

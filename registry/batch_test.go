package registry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/signer"
)

const base = "https://registry.example"

// batchFixture is a repository holding an image (v1: config and two
// layers), a multi-platform index (multi), an index nesting another
// (nested), a Docker manifest list (list) and an image with a foreign
// layer (foreign).
type batchFixture struct {
	cfg, l1, l2        oci.Descriptor
	img, arm, armV6    oci.Descriptor
	multi, inner       oci.Descriptor
	nested, list       oci.Descriptor
	foreign            oci.Descriptor // an image with a foreign layer
	imgBytes, armBytes []byte
}

func newBatchFixture(e *env, repo string) *batchFixture {
	f := &batchFixture{}
	f.cfg = e.blob(repo, configType, `{"os":"linux","architecture":"amd64"}`)
	f.l1 = e.blob(repo, layerType, "layer one")
	f.l2 = e.blob(repo, "application/vnd.oci.image.layer.v1.tar", "layer two, longer")
	f.imgBytes = imageManifest(f.cfg, f.l1, f.l2)
	f.img = e.push(repo, "v1", f.imgBytes)
	f.armBytes = e.image(repo, "arm64", 1)
	f.arm = e.push(repo, "arm64", f.armBytes)
	f.armV6 = e.push(repo, "armv6", e.image(repo, "armv6", 1))
	f.multi = e.push(repo, "multi", index(
		onPlatform(f.img, "linux", "amd64", ""),
		onPlatform(f.arm, "linux", "arm64", "v8"),
		onPlatform(f.armV6, "linux", "arm", "v6"),
	))
	f.inner = e.push(repo, "inner", index(onPlatform(f.arm, "linux", "arm64", "")))
	f.nested = e.push(repo, "nested", index(onPlatform(f.inner, "linux", "arm64", ""), onPlatform(f.img, "linux", "amd64", "")))
	list := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeDockerManifestList,
		"manifests": []oci.Descriptor{onPlatform(f.img, "linux", "amd64", "")}})
	d, err := e.reg.PutManifest(e.ctx, repo, oci.Reference{Tag: "list"}, oci.MediaTypeDockerManifestList, list)
	if err != nil {
		e.t.Fatal(err)
	}
	ext := oci.Descriptor{MediaType: oci.MediaTypeDockerForeignLayer, Digest: digest.FromString("elsewhere"), Size: 99,
		URLs: []string{"https://example.com/layer"}}
	f.foreign = e.push(repo, "foreign", imageManifest(f.cfg, f.l1, ext, f.l2))
	f.list = oci.Descriptor{MediaType: oci.MediaTypeDockerManifestList, Digest: d.Digest, Size: int64(len(list))}
	return f
}

// TestBlobURLs: the batch endpoint's answers, by the registry method it
// calls.
func TestBlobURLs(t *testing.T) {
	const repo = "team/app"
	e := newEnv(t, registry.Options{}, true)
	f := newBatchFixture(e, repo)
	image := func(d oci.Descriptor, blobs ...oci.Descriptor) func(*batch.Response) string {
		return func(got *batch.Response) string {
			if got.ManifestDigest != d.Digest {
				return "manifestDigest " + got.ManifestDigest.String() + ", want " + d.Digest.String()
			}
			if blobs == nil {
				return ""
			}
			var total int64
			for i, b := range blobs {
				total += b.Size
				if i >= len(got.Blobs) {
					return "too few blobs"
				}
				g, kind := got.Blobs[i], "layer"
				if i == 0 {
					kind = "config"
				}
				if g.Digest != b.Digest || g.Size != b.Size || g.MediaType != b.MediaType || g.Kind != kind {
					return "blob " + g.Digest.String() + " " + g.Kind + " " + g.MediaType + " out of place"
				}
				if want := base + signer.DownloadPath + b.Digest.String() + "?"; !strings.HasPrefix(g.DownloadURL, want) {
					return "download URL " + g.DownloadURL + ", want it under " + want
				}
			}
			if len(got.Blobs) != len(blobs) || got.TotalSize != total {
				return "wrong blob count or totalSize"
			}
			return ""
		}
	}
	cases := []struct {
		name     string
		repo     string
		ref      oci.Reference
		platform string
		want     func(*batch.Response) string
		wantErr  oci.Code
		index    *oci.Descriptor // a *registry.IndexError about this index
		children int             // ... listing this many
		nested   bool            // ... naming the nested index's digest
	}{
		{name: "image by tag: config first, then layers in order", ref: oci.Reference{Tag: "v1"}, want: image(f.img, f.cfg, f.l1, f.l2)},
		{name: "image by digest", ref: oci.Reference{Digest: f.img.Digest}, want: image(f.img, f.cfg, f.l1, f.l2)},
		{name: "platform ignored for an image", ref: oci.Reference{Tag: "v1"}, platform: "windows/amd64", want: image(f.img, f.cfg, f.l1, f.l2)},
		{name: "index without a platform", ref: oci.Reference{Tag: "multi"}, index: &f.multi, children: 3},
		{name: "index, platform picks a child", ref: oci.Reference{Tag: "multi"}, platform: "linux/amd64", want: image(f.img, f.cfg, f.l1, f.l2)},
		{name: "index, variant named", ref: oci.Reference{Tag: "multi"}, platform: "linux/arm64/v8", want: image(f.arm)},
		{name: "index, variant left out", ref: oci.Reference{Tag: "multi"}, platform: "linux/arm64", want: image(f.arm)},
		{name: "index, other variant", ref: oci.Reference{Tag: "multi"}, platform: "linux/arm/v6", want: image(f.armV6)},
		{name: "index, no such variant", ref: oci.Reference{Tag: "multi"}, platform: "linux/arm/v7", wantErr: oci.CodeManifestUnknown},
		{name: "index, no such platform", ref: oci.Reference{Tag: "multi"}, platform: "windows/amd64", wantErr: oci.CodeManifestUnknown},
		{name: "index, malformed platform", ref: oci.Reference{Tag: "multi"}, platform: "linux", wantErr: oci.CodeUnsupported},
		{name: "nested index", ref: oci.Reference{Tag: "nested"}, platform: "linux/arm64", index: &f.inner, children: 1, nested: true},
		{name: "nested index, the image sibling", ref: oci.Reference{Tag: "nested"}, platform: "linux/amd64", want: image(f.img)},
		{name: "Docker manifest list", ref: oci.Reference{Tag: "list"}, platform: "linux/amd64", want: image(f.img, f.cfg, f.l1, f.l2)},
		{name: "Docker manifest list without a platform", ref: oci.Reference{Tag: "list"}, index: &f.list, children: 1},
		{name: "a foreign layer is not listed", ref: oci.Reference{Tag: "foreign"}, want: image(f.foreign, f.cfg, f.l1, f.l2)},
		{name: "unknown tag", ref: oci.Reference{Tag: "nope"}, wantErr: oci.CodeManifestUnknown},
		{name: "unknown digest", ref: oci.Reference{Digest: digest.FromString("nope")}, wantErr: oci.CodeManifestUnknown},
		{name: "unknown repository", repo: "team/none", ref: oci.Reference{Tag: "v1"}, wantErr: oci.CodeManifestUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := repo
			if tc.repo != "" {
				r = tc.repo
			}
			got, err := e.reg.BlobURLs(e.ctx, r, tc.ref, batch.DefaultExpiry, tc.platform, base)
			if tc.index != nil {
				var ie *registry.IndexError
				if !errors.As(err, &ie) {
					t.Fatalf("error %v, want an *IndexError", err)
				}
				if ie.MediaType != tc.index.MediaType || len(ie.Manifests) != tc.children || ie.Manifests[0].Platform == nil {
					t.Errorf("index error %+v, want the %d children (with platforms) of a %s", ie, tc.children, tc.index.MediaType)
				}
				want := digest.Digest("") // the index the reference names
				if tc.nested {
					want = tc.index.Digest
				}
				if ie.Digest != want {
					t.Errorf("index error names %q, want %q", ie.Digest, want)
				}
				return
			}
			wantCode(t, "batch", err, tc.wantErr)
			if tc.wantErr == oci.CodeManifestUnknown && err != registry.ErrNotFoundBatch {
				t.Errorf("not-found answer %v is not the one ErrNotFoundBatch", err)
			}
			if tc.wantErr != "" {
				return
			}
			if msg := tc.want(got); msg != "" {
				t.Error(msg)
			}
			if got.Manifest == nil || got.Manifest.Digest != got.ManifestDigest || got.Manifest.Size != int64(len(got.Manifest.Data)) ||
				digest.FromBytes(got.Manifest.Data) != got.ManifestDigest {
				t.Errorf("embedded manifest %+v does not match %s", got.Manifest, got.ManifestDigest)
			}
		})
	}
}

// TestBlobURLsExpiry: expiresAt is at least the lifetime asked from now,
// rounded up by at most a bucket, never past the maximum, and the answer
// is shared within a bucket and renewed after it.
func TestBlobURLsExpiry(t *testing.T) {
	const repo = "team/app"
	e := newEnv(t, registry.Options{}, true)
	newBatchFixture(e, repo)
	now := e.clock()
	for _, tc := range []struct {
		lifetime, slack time.Duration
		cap             bool
	}{
		{batch.MinExpiry, 6 * time.Second, false},
		{batch.DefaultExpiry, 5 * time.Minute, false},
		{batch.MaxExpiry, 0, true},
		{batch.MaxExpiry + time.Hour, 0, true},
	} {
		got, err := e.reg.BlobURLs(e.ctx, repo, oci.Reference{Tag: "v1"}, tc.lifetime, "", base)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := now.Add(min(tc.lifetime, batch.MaxExpiry)), now.Add(min(tc.lifetime, batch.MaxExpiry)+tc.slack)
		if got.ExpiresAt.Before(lo) || got.ExpiresAt.After(hi) {
			t.Errorf("lifetime %v: expiresAt %v, want in [%v, %v]", tc.lifetime, got.ExpiresAt, lo, hi)
		}
		if tc.cap && got.ExpiresAt.After(now.Add(batch.MaxExpiry)) {
			t.Errorf("lifetime %v: expiresAt %v is past the maximum", tc.lifetime, got.ExpiresAt)
		}
		if got.ExpiresAt.Location() != time.UTC {
			t.Errorf("expiresAt %v not in UTC", got.ExpiresAt)
		}
	}

	setClock := func(t time.Time) {
		e.mu.Lock()
		e.now = t
		e.mu.Unlock()
	}
	setClock(now.Add(time.Minute)) // inside a 5-minute bucket of a one-hour lifetime
	first, _ := e.reg.BlobURLs(e.ctx, repo, oci.Reference{Tag: "v1"}, batch.DefaultExpiry, "", base)
	setClock(now.Add(2 * time.Minute))
	again, _ := e.reg.BlobURLs(e.ctx, repo, oci.Reference{Tag: "v1"}, batch.DefaultExpiry, "", base)
	if again != first {
		t.Error("a minute later, in the same bucket, the answer was built again")
	}
	setClock(now.Add(10 * time.Minute))
	later, _ := e.reg.BlobURLs(e.ctx, repo, oci.Reference{Tag: "v1"}, batch.DefaultExpiry, "", base)
	if !later.ExpiresAt.After(first.ExpiresAt) || later.ExpiresAt.Before(e.clock().Add(batch.DefaultExpiry)) {
		t.Errorf("ten minutes later expiresAt is %v (first %v)", later.ExpiresAt, first.ExpiresAt)
	}
}

// TestBlobURLsFollowWrites: a cached answer never outlives the write that
// changes it, and a blob unlinked from under a manifest is reported.
func TestBlobURLsFollowWrites(t *testing.T) {
	const repo = "team/app"
	e := newEnv(t, registry.Options{}, true)
	f := newBatchFixture(e, repo)
	v1 := oci.Reference{Tag: "v1"}
	if _, err := e.reg.BlobURLs(e.ctx, repo, v1, batch.DefaultExpiry, "", base); err != nil {
		t.Fatal(err)
	}
	e.push(repo, "v1", f.armBytes) // move the tag
	got, err := e.reg.BlobURLs(e.ctx, repo, v1, batch.DefaultExpiry, "", base)
	if err != nil || got.ManifestDigest != f.arm.Digest {
		t.Fatalf("after the tag moved: %v, %v; want %s", got, err, f.arm.Digest)
	}
	if err := e.reg.DeleteBlob(e.ctx, repo, f.l2.Digest); err != nil {
		t.Fatal(err)
	}
	_, err = e.reg.BlobURLs(e.ctx, repo, oci.Reference{Digest: f.img.Digest}, batch.DefaultExpiry, "", base)
	wantCode(t, "a manifest whose layer was unlinked", err, oci.CodeBlobUnknown)
	if s := oci.AsError(err).Status; s != 404 {
		t.Errorf("status %d, want 404", s)
	}
	if err := e.reg.DeleteManifest(e.ctx, repo, v1); err != nil {
		t.Fatal(err)
	}
	_, err = e.reg.BlobURLs(e.ctx, repo, v1, batch.DefaultExpiry, "", base)
	if err != registry.ErrNotFoundBatch {
		t.Errorf("a deleted tag: %v, want ErrNotFoundBatch", err)
	}

	plain := newEnv(t, registry.Options{}, false)
	plain.push(repo, "v1", plain.image(repo, "x", 1))
	_, err = plain.reg.BlobURLs(plain.ctx, repo, v1, batch.DefaultExpiry, "", base)
	if !errors.Is(err, registry.ErrSigning) {
		t.Errorf("no signer: %v, want ErrSigning", err)
	}
}

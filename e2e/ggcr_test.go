package e2e

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/oci"
)

// randomImage makes a random image; oci switches it from Docker schema 2
// media types (random's default) to OCI ones.
func randomImage(t *testing.T, layers int64, oci bool) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	if oci {
		img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	return img
}

func mustDigest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// layerBytes reads a layer's compressed bytes.
func layerBytes(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	return testhttp.ReadAll(t, rc)
}

// expectTransportError fails unless err is a registry error with the status
// and OCI code.
func expectTransportError(t *testing.T, what string, err error, status int, code transport.ErrorCode) {
	t.Helper()
	var terr *transport.Error
	if !asTransportError(err, &terr) {
		t.Fatalf("%s: error %v, want a registry error %d %s", what, err, status, code)
	}
	if terr.StatusCode != status || len(terr.Errors) == 0 || terr.Errors[0].Code != code {
		t.Fatalf("%s: got %d %+v, want %d %s", what, terr.StatusCode, terr.Errors, status, code)
	}
}

func asTransportError(err error, target **transport.Error) bool {
	for err != nil {
		if e, ok := err.(*transport.Error); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestGGCRImageRoundTrip pushes multi-layer random images and pulls them
// back: manifest, config and every layer keep their digests and bytes.
func TestGGCRImageRoundTrip(t *testing.T) {
	reg := start(t)
	for _, tc := range []struct {
		name      string
		oci       bool
		mediaType types.MediaType
	}{
		{"docker schema2", false, types.DockerManifestSchema2},
		{"oci", true, types.OCIManifestSchema1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := randomImage(t, 4, tc.oci)
			ref := reg.ref(t, "roundtrip/"+strings.ReplaceAll(tc.name, " ", "-")+":latest")
			if err := remote.Write(ref, img, reg.opts(t)...); err != nil {
				t.Fatalf("push: %v", err)
			}

			desc, err := remote.Get(ref, reg.opts(t)...)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if want := mustDigest(t, img); desc.Digest != want {
				t.Errorf("manifest digest %s, want %s", desc.Digest, want)
			}
			if desc.MediaType != tc.mediaType {
				t.Errorf("media type %s, want %s", desc.MediaType, tc.mediaType)
			}
			wantRaw, _ := img.RawManifest()
			if !bytes.Equal(desc.Manifest, wantRaw) {
				t.Errorf("manifest bytes differ from what was pushed")
			}

			pulled, err := desc.Image()
			if err != nil {
				t.Fatal(err)
			}
			wantCfg, _ := img.ConfigName()
			gotCfg, err := pulled.ConfigName()
			if err != nil || gotCfg != wantCfg {
				t.Errorf("config digest %s (%v), want %s", gotCfg, err, wantCfg)
			}
			rawCfg, err := pulled.RawConfigFile() // verified against its digest by ggcr
			if err != nil {
				t.Fatalf("pull config: %v", err)
			}
			if wantRawCfg, _ := img.RawConfigFile(); !bytes.Equal(rawCfg, wantRawCfg) {
				t.Errorf("config bytes differ")
			}

			wantLayers, _ := img.Layers()
			gotLayers, err := pulled.Layers()
			if err != nil || len(gotLayers) != len(wantLayers) {
				t.Fatalf("pulled %d layers (%v), want %d", len(gotLayers), err, len(wantLayers))
			}
			for i := range wantLayers {
				wd, gd := mustDigest(t, wantLayers[i]), mustDigest(t, gotLayers[i])
				if wd != gd {
					t.Errorf("layer %d digest %s, want %s", i, gd, wd)
				}
				got := layerBytes(t, gotLayers[i])
				if !bytes.Equal(got, layerBytes(t, wantLayers[i])) {
					t.Errorf("layer %d bytes differ", i)
				}
				if h, _, _ := v1.SHA256(bytes.NewReader(got)); h != wd {
					t.Errorf("layer %d bytes hash to %s, want %s", i, h, wd)
				}
			}
		})
	}
}

// TestGGCRIndexRoundTrip pushes a linux/amd64 + linux/arm64 index with
// remote.WriteIndex and resolves each child by platform.
func TestGGCRIndexRoundTrip(t *testing.T) {
	reg := start(t)
	platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	images := map[string]v1.Image{}
	idx := v1.ImageIndex(empty.Index)
	for _, p := range platforms {
		img := randomImage(t, 2, true)
		images[p.Architecture] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	ref := reg.ref(t, "multi/arch:latest")
	if err := remote.WriteIndex(ref, idx, reg.opts(t)...); err != nil {
		t.Fatalf("push index: %v", err)
	}

	pulled, err := remote.Index(ref, reg.opts(t)...)
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	if got, want := mustDigest(t, pulled), mustDigest(t, idx); got != want {
		t.Fatalf("index digest %s, want %s", got, want)
	}
	if mt, _ := pulled.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	im, err := pulled.IndexManifest()
	if err != nil || len(im.Manifests) != 2 {
		t.Fatalf("index manifest: %v, %+v", err, im)
	}

	for _, p := range platforms {
		t.Run(p.String(), func(t *testing.T) {
			want := mustDigest(t, images[p.Architecture])
			img, err := remote.Image(ref, reg.opts(t, remote.WithPlatform(p))...)
			if err != nil {
				t.Fatalf("pull %s: %v", p, err)
			}
			if got := mustDigest(t, img); got != want {
				t.Fatalf("%s resolved to %s, want %s", p, got, want)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range layers {
				b := layerBytes(t, l)
				if h, _, _ := v1.SHA256(bytes.NewReader(b)); h != mustDigest(t, l) {
					t.Errorf("layer %d bytes hash to %s, want %s", i, h, mustDigest(t, l))
				}
			}
			// The child is also reachable by digest.
			if _, err := remote.Image(reg.digestRef(t, "multi/arch", want.String()), reg.opts(t)...); err != nil {
				t.Errorf("pull child by digest: %v", err)
			}
		})
	}
}

// rawArtifact is a manifest pushed as-is with remote.Put.
type rawArtifact struct{ raw []byte }

func (a rawArtifact) RawManifest() ([]byte, error)        { return a.raw, nil }
func (a rawArtifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// TestGGCRReferrers pushes artifacts whose subject is an image and lists
// them through the referrers API, with and without an artifactType filter.
func TestGGCRReferrers(t *testing.T) {
	reg := start(t)
	const repo = "with/referrers"
	img := randomImage(t, 1, true)
	imgRef := reg.ref(t, repo+":v1")
	if err := remote.Write(imgRef, img, reg.opts(t)...); err != nil {
		t.Fatalf("push image: %v", err)
	}
	subject, err := remote.Head(imgRef, reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}

	// The artifacts' blobs: the empty config and one payload layer each.
	emptyConfig := static.NewLayer([]byte("{}"), mtOCIEmpty)
	if err := remote.WriteLayer(reg.repo(t, repo), emptyConfig, reg.opts(t)...); err != nil {
		t.Fatalf("push empty config: %v", err)
	}
	artifacts := map[string]v1.Hash{} // artifactType -> manifest digest
	for _, at := range []string{"application/vnd.example.sbom.v1", "application/vnd.example.signature.v1"} {
		payload := static.NewLayer(randomBytes(t, 256), "application/vnd.example.payload")
		if err := remote.WriteLayer(reg.repo(t, repo), payload, reg.opts(t)...); err != nil {
			t.Fatalf("push payload: %v", err)
		}
		cfgDesc := layerDescriptor(t, emptyConfig, mtOCIEmpty)
		layerDesc := layerDescriptor(t, payload, "application/vnd.example.payload")
		m := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			ArtifactType:  at,
			Config:        cfgDesc,
			Layers:        []v1.Descriptor{layerDesc},
			Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
			Annotations:   map[string]string{"org.example.kind": at},
		}
		raw := mustJSON(t, m)
		h, _, _ := v1.SHA256(bytes.NewReader(raw))
		artifacts[at] = h

		reg.rec.reset()
		if err := remote.Put(reg.digestRef(t, repo, h.String()), rawArtifact{raw}, reg.opts(t)...); err != nil {
			t.Fatalf("push artifact %s: %v", at, err)
		}
		puts := reg.rec.find(func(e exchange) bool {
			return e.Method == http.MethodPut && strings.HasSuffix(e.URL.Path, "/manifests/"+h.String())
		})
		if len(puts) != 1 || puts[0].Status != http.StatusCreated {
			t.Fatalf("artifact PUT: %+v", puts)
		}
		if got := puts[0].Header.Get("OCI-Subject"); got != subject.Digest.String() {
			t.Errorf("artifact PUT: OCI-Subject = %q, want %q", got, subject.Digest)
		}
	}

	// An image manifest with a subject but no artifactType is listed under
	// its config media type.
	const sigConfig = "application/vnd.example.signature.config.v1+json"
	sig := mutate.Subject(mutate.ConfigMediaType(randomImage(t, 1, true), sigConfig),
		v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}).(v1.Image)
	artifacts[sigConfig] = mustDigest(t, sig)
	if err := remote.Write(reg.digestRef(t, repo, artifacts[sigConfig].String()), sig, reg.opts(t)...); err != nil {
		t.Fatalf("push image with subject: %v", err)
	}

	// The registry said OCI-Subject, so the client made no fallback tag.
	tags, err := remote.List(reg.repo(t, repo), reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("tags %q: want only v1 (no referrers fallback tag)", tags)
	}

	subjectRef := reg.digestRef(t, repo, subject.Digest.String())
	for _, tc := range []struct {
		name   string
		filter string
		want   []string
	}{
		{"all", "", []string{"application/vnd.example.sbom.v1", "application/vnd.example.signature.config.v1+json", "application/vnd.example.signature.v1"}},
		{"config media type", sigConfig, []string{sigConfig}},
		{"sbom only", "application/vnd.example.sbom.v1", []string{"application/vnd.example.sbom.v1"}},
		{"no match", "application/vnd.example.none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []remote.Option
			if tc.filter != "" {
				extra = append(extra, remote.WithFilter("artifactType", tc.filter))
			}
			idx, err := remote.Referrers(subjectRef, reg.opts(t, extra...)...)
			if err != nil {
				t.Fatalf("referrers: %v", err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range im.Manifests {
				got = append(got, d.ArtifactType)
				if d.Digest != artifacts[d.ArtifactType] {
					t.Errorf("referrer %s has digest %s, want %s", d.ArtifactType, d.Digest, artifacts[d.ArtifactType])
				}
				if d.MediaType != types.OCIManifestSchema1 {
					t.Errorf("referrer descriptor %+v: media type %s", d, d.MediaType)
				}
				if d.ArtifactType != sigConfig && d.Annotations["org.example.kind"] != d.ArtifactType {
					t.Errorf("referrer descriptor %+v lacks the manifest's annotations", d)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("referrers %q, want %q", got, tc.want)
			}

			// go-containerregistry filters on its side; the registry must
			// filter too, and say so, when asked with the query parameter.
			u := reg.URL + "/v2/" + repo + "/referrers/" + subject.Digest.String()
			if tc.filter != "" {
				u += "?artifactType=" + url.QueryEscape(tc.filter)
			}
			r := do(t, http.MethodGet, u, nil, "Accept: "+mtOCIIndex)
			expectStatus(t, "GET referrers", r, http.StatusOK)
			expectHeader(t, "GET referrers", r, "Content-Type", mtOCIIndex)
			if tc.filter != "" {
				expectHeader(t, "GET referrers", r, "OCI-Filters-Applied", "artifactType")
			} else if h := r.Header.Get("OCI-Filters-Applied"); h != "" {
				t.Errorf("unfiltered referrers: OCI-Filters-Applied = %q", h)
			}
			var body manifest
			decodeJSON(t, "GET referrers", r, &body)
			if body.MediaType != mtOCIIndex || body.SchemaVersion != 2 || len(body.Manifests) != len(tc.want) {
				t.Errorf("referrers body: %s", r.Body)
			}
		})
	}

	// A subject nobody refers to (or that does not exist) has an empty list.
	r := do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/referrers/"+digest.FromString("nobody").String(), nil)
	expectStatus(t, "GET referrers of unknown subject", r, http.StatusOK)
	var body struct {
		Manifests []descriptor `json:"manifests"`
	}
	decodeJSON(t, "GET referrers of unknown subject", r, &body)
	if body.Manifests == nil || len(body.Manifests) != 0 {
		t.Errorf("referrers of unknown subject: %s, want an empty manifests array", r.Body)
	}
}

// layerDescriptor describes a layer with a media type.
func layerDescriptor(t *testing.T, l v1.Layer, mt string) v1.Descriptor {
	t.Helper()
	size, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: mustDigest(t, l), Size: size}
}

// TestGGCRCopyAcrossRepositories pulls an image from one repository and
// writes it to another: its blobs are mounted, not uploaded again.
func TestGGCRCopyAcrossRepositories(t *testing.T) {
	reg := start(t)
	src := randomImage(t, 3, true)
	if err := remote.Write(reg.ref(t, "copy/a:v1"), src, reg.opts(t)...); err != nil {
		t.Fatalf("push to a: %v", err)
	}
	pulled, err := remote.Image(reg.ref(t, "copy/a:v1"), reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}

	reg.rec.reset()
	if err := remote.Write(reg.ref(t, "copy/b:v1"), pulled, reg.opts(t)...); err != nil {
		t.Fatalf("copy to b: %v", err)
	}

	layers, _ := src.Layers()
	blobs := []v1.Hash{}
	for _, l := range layers {
		blobs = append(blobs, mustDigest(t, l))
	}
	cfg, _ := src.ConfigName()
	blobs = append(blobs, cfg)

	mounts := reg.rec.find(func(e exchange) bool {
		return e.Method == http.MethodPost && strings.HasSuffix(e.URL.Path, "/v2/copy/b/blobs/uploads/") && e.URL.Query().Get("mount") != ""
	})
	mounted := map[string]bool{}
	for _, m := range mounts {
		if m.Status != http.StatusCreated {
			t.Errorf("mount of %s from %s: status %d, want 201", m.URL.Query().Get("mount"), m.URL.Query().Get("from"), m.Status)
		}
		if from := m.URL.Query().Get("from"); from != "copy/a" {
			t.Errorf("mount from %q, want copy/a", from)
		}
		mounted[m.URL.Query().Get("mount")] = true
	}
	for _, l := range layers {
		if d := mustDigest(t, l); !mounted[d.String()] {
			t.Errorf("layer %s was not mounted into copy/b", d)
		}
	}
	if uploads := reg.rec.find(func(e exchange) bool { return e.Method == http.MethodPatch }); len(uploads) != 0 {
		t.Errorf("copy uploaded bytes (%d PATCH requests) instead of mounting", len(uploads))
	}

	// A mount the registry cannot do starts an ordinary upload instead.
	r := do(t, http.MethodPost, reg.URL+"/v2/copy/b/blobs/uploads/?mount="+digest.FromString("absent").String()+"&from=copy/a", nil)
	expectStatus(t, "POST mount of an absent blob", r, http.StatusAccepted)
	if r.Header.Get("Location") == "" {
		t.Errorf("POST mount of an absent blob: no upload Location")
	}

	// Every blob is now readable in b.
	for _, d := range blobs {
		getBlob(t, reg.URL, "copy/b", digest.Digest(d.String()))
	}
	copied, err := remote.Image(reg.ref(t, "copy/b:v1"), reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustDigest(t, copied), mustDigest(t, src); got != want {
		t.Errorf("copied manifest digest %s, want %s", got, want)
	}
}

// TestGGCRTagsPagination lists tags with n and last, following Link headers
// by hand and through go-containerregistry.
func TestGGCRTagsPagination(t *testing.T) {
	reg := start(t)
	const repo = "paged/tags"
	img := randomImage(t, 1, true)
	want := []string{"a", "b", "c", "d", "e"}
	if err := remote.Write(reg.ref(t, repo+":"+want[0]), img, reg.opts(t)...); err != nil {
		t.Fatal(err)
	}
	for _, tag := range want[1:] {
		if err := remote.Tag(reg.ref(t, repo+":"+tag).(name.Tag), img, reg.opts(t)...); err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
	}

	for _, tc := range []struct {
		query string
		tags  []string
		next  string // the Link target, "" for none
	}{
		{"", want, ""},
		{"?n=2", []string{"a", "b"}, "/v2/paged/tags/tags/list?last=b&n=2"},
		{"?n=2&last=b", []string{"c", "d"}, "/v2/paged/tags/tags/list?last=d&n=2"},
		{"?n=2&last=d", []string{"e"}, ""},
		{"?last=c", []string{"d", "e"}, ""},
		{"?n=10", want, ""},
		{"?n=0", []string{}, ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/tags/list"+tc.query, nil)
			expectStatus(t, "GET tags/list", r, http.StatusOK)
			var tl tagList
			decodeJSON(t, "GET tags/list", r, &tl)
			if len(tl.Tags) != len(tc.tags) || !slices.Equal(tl.Tags, tc.tags) {
				t.Errorf("tags %q, want %q", tl.Tags, tc.tags)
			}
			link := r.Header.Get("Link")
			if tc.next == "" {
				if link != "" {
					t.Errorf("Link %q, want none", link)
				}
				return
			}
			if want := "<" + tc.next + `>; rel="next"`; link != want {
				t.Errorf("Link %q, want %q", link, want)
			}
		})
	}

	// Walking the Link chain page by page visits every tag once.
	var walked []string
	next := "/v2/" + repo + "/tags/list?n=2"
	linkRE := regexp.MustCompile(`^<([^>]+)>;\s*rel="next"$`)
	for pages := 0; next != ""; pages++ {
		if pages > len(want) {
			t.Fatalf("Link chain does not end")
		}
		r := do(t, http.MethodGet, reg.URL+next, nil)
		expectStatus(t, "GET "+next, r, http.StatusOK)
		var tl tagList
		decodeJSON(t, "GET "+next, r, &tl)
		walked = append(walked, tl.Tags...)
		next = ""
		if m := linkRE.FindStringSubmatch(r.Header.Get("Link")); m != nil {
			next = m[1]
		}
	}
	if !slices.Equal(walked, want) {
		t.Errorf("walked tags %q, want %q", walked, want)
	}

	// go-containerregistry follows the Link header itself.
	got, err := remote.List(reg.repo(t, repo), reg.opts(t, remote.WithPageSize(2))...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("remote.List %q, want %q", got, want)
	}

	// Bad n is a 400 with an OCI body.
	r := do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/tags/list?n=-1", nil)
	if r.Status != http.StatusBadRequest {
		t.Errorf("n=-1: status %d, want 400", r.Status)
	}
	if e, ok := oci.ParseErrorResponse(r.Body); !ok || e.Errors[0].Code == "" {
		t.Errorf("n=-1: body %s has no OCI error", r.Body)
	}
}

// TestGGCRCatalog lists repositories, whole and page by page.
func TestGGCRCatalog(t *testing.T) {
	reg := start(t)
	img := randomImage(t, 1, true)
	want := []string{"cat/one", "cat/three", "cat/two", "other"}
	for _, repo := range want {
		if err := remote.Write(reg.ref(t, repo+":v1"), img, reg.opts(t)...); err != nil {
			t.Fatal(err)
		}
	}
	registry, err := name.NewRegistry(reg.Host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}

	got, err := remote.Catalog(t.Context(), registry, reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("catalog %q, want %q", got, want)
	}

	page, err := remote.CatalogPage(registry, "cat/one", 2, reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(page, []string{"cat/three", "cat/two"}) {
		t.Errorf("catalog page after cat/one %q", page)
	}

	r := do(t, http.MethodGet, reg.URL+"/v2/_catalog?n=1", nil)
	expectStatus(t, "GET _catalog?n=1", r, http.StatusOK)
	expectHeader(t, "GET _catalog?n=1", r, "Link", `</v2/_catalog?last=cat%2Fone&n=1>; rel="next"`)
	var body struct {
		Repositories []string `json:"repositories"`
	}
	decodeJSON(t, "GET _catalog?n=1", r, &body)
	if !slices.Equal(body.Repositories, []string{"cat/one"}) {
		t.Errorf("first catalog page %q", body.Repositories)
	}
}

// TestGGCRDelete deletes by tag (an untag: the manifest stays) and by
// digest (the manifest and all its tags go).
func TestGGCRDelete(t *testing.T) {
	reg := start(t)
	const repo = "del/repo"
	img := randomImage(t, 2, true)
	dgst := mustDigest(t, img)
	for _, tag := range []string{"keep", "untag", "also"} {
		if err := remote.Write(reg.ref(t, repo+":"+tag), img, reg.opts(t)...); err != nil {
			t.Fatal(err)
		}
	}
	byDigest := reg.digestRef(t, repo, dgst.String())

	// By tag.
	if err := remote.Delete(reg.ref(t, repo+":untag"), reg.opts(t)...); err != nil {
		t.Fatalf("delete tag: %v", err)
	}
	_, err := remote.Get(reg.ref(t, repo+":untag"), reg.opts(t)...)
	expectTransportError(t, "get untagged", err, http.StatusNotFound, transport.ManifestUnknownErrorCode)
	if _, err := remote.Get(byDigest, reg.opts(t)...); err != nil {
		t.Fatalf("get by digest after untag: %v", err)
	}
	if _, err := remote.Get(reg.ref(t, repo+":keep"), reg.opts(t)...); err != nil {
		t.Fatalf("get other tag after untag: %v", err)
	}
	if tags, _ := remote.List(reg.repo(t, repo), reg.opts(t)...); !slices.Equal(tags, []string{"also", "keep"}) {
		t.Errorf("tags after untag %q", tags)
	}

	// By digest.
	if err := remote.Delete(byDigest, reg.opts(t)...); err != nil {
		t.Fatalf("delete by digest: %v", err)
	}
	for _, ref := range []name.Reference{byDigest, reg.ref(t, repo+":keep"), reg.ref(t, repo+":also")} {
		_, err := remote.Get(ref, reg.opts(t)...)
		expectTransportError(t, "get "+ref.String()+" after delete", err, http.StatusNotFound, transport.ManifestUnknownErrorCode)
		r := do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/manifests/"+ref.Identifier(), nil)
		expectError(t, "GET "+ref.Identifier()+" after delete", r, http.StatusNotFound, "MANIFEST_UNKNOWN")
	}
	if tags := listTags(t, reg.URL, repo); len(tags) != 0 {
		t.Errorf("tags after delete by digest %q, want none", tags)
	}
	r := do(t, http.MethodDelete, reg.URL+"/v2/"+repo+"/manifests/"+dgst.String(), nil)
	expectError(t, "DELETE deleted manifest", r, http.StatusNotFound, "MANIFEST_UNKNOWN")
}

// TestSHA512Blobs uploads blobs under sha512 digests, monolithically and in
// chunks, and reads them back. (go-containerregistry speaks only sha256,
// so this is plain HTTP.)
func TestSHA512Blobs(t *testing.T) {
	reg := start(t)
	const repo = "sha512/blobs"
	sha512Of := func(b []byte) digest.Digest {
		sum := sha512.Sum512(b)
		return digest.Digest("sha512:" + hex.EncodeToString(sum[:]))
	}

	t.Run("monolithic POST", func(t *testing.T) {
		blob := randomBytes(t, 5000)
		d := sha512Of(blob)
		r := do(t, http.MethodPost, reg.URL+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), blob,
			"Content-Type: application/octet-stream")
		expectStatus(t, "POST ?digest=sha512", r, http.StatusCreated)
		expectHeader(t, "POST ?digest=sha512", r, "Docker-Content-Digest", d.String())
		expectHeader(t, "POST ?digest=sha512", r, "Location", reg.URL+"/v2/"+repo+"/blobs/"+d.String())
		if got := getBlob(t, reg.URL, repo, d); !bytes.Equal(got, blob) {
			t.Fatal("bytes differ")
		}
		r = do(t, http.MethodHead, reg.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
		expectStatus(t, "HEAD sha512 blob", r, http.StatusOK)
		expectHeader(t, "HEAD sha512 blob", r, "Content-Length", strconv.Itoa(len(blob)))
	})

	for _, tc := range []struct {
		name  string
		start string // query of the POST
	}{
		{"chunked, session hashed with sha256", ""},
		{"chunked, session started with digest-algorithm=sha512", "?digest-algorithm=sha512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := randomBytes(t, 7000)
			d := sha512Of(blob)
			r := do(t, http.MethodPost, reg.URL+"/v2/"+repo+"/blobs/uploads/"+tc.start, nil)
			expectStatus(t, "POST", r, http.StatusAccepted)
			loc := r.Header.Get("Location")
			for _, c := range [][2]int{{0, 4096}, {4096, 7000}} {
				r = do(t, http.MethodPatch, loc, blob[c[0]:c[1]],
					"Content-Type: application/octet-stream",
					"Content-Range: "+strconv.Itoa(c[0])+"-"+strconv.Itoa(c[1]-1))
				expectStatus(t, "PATCH", r, http.StatusAccepted)
				loc = r.Header.Get("Location")
			}
			r = do(t, http.MethodPut, loc+"&digest="+d.String(), nil)
			expectStatus(t, "PUT ?digest=sha512", r, http.StatusCreated)
			expectHeader(t, "PUT ?digest=sha512", r, "Docker-Content-Digest", d.String())
			if got := getBlob(t, reg.URL, repo, d); !bytes.Equal(got, blob) {
				t.Fatal("bytes differ")
			}
		})
	}

	t.Run("wrong sha512 digest", func(t *testing.T) {
		blob := randomBytes(t, 100)
		wrong := sha512Of([]byte("something else"))
		r := do(t, http.MethodPost, reg.URL+"/v2/"+repo+"/blobs/uploads/?digest="+wrong.String(), blob,
			"Content-Type: application/octet-stream")
		expectError(t, "POST with a wrong sha512", r, http.StatusBadRequest, "DIGEST_INVALID")
		r = do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/blobs/"+wrong.String(), nil)
		expectError(t, "GET blob never stored", r, http.StatusNotFound, "BLOB_UNKNOWN")
	})
}

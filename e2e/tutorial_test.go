package e2e

import (
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestTutorialBlobRoundTrip replays "Upload a blob to a registry using curl"
// and "Download a blob": POST, PUT "${LOCATION}&digest=sha256:...", GET.
func TestTutorialBlobRoundTrip(t *testing.T) {
	reg := start(t)
	blob := randomBytes(t, 64<<10) // ~/blob.tar.gz
	dgst := digest.FromBytes(blob)

	// 1. LOCATION=$(curl -s -o /dev/null -X POST -w '%header{location}' .../v2/hello-world/blobs/uploads/)
	location := startUpload(t, reg.URL, "hello-world")

	// 2. curl -s -i -X PUT -H "Content-Type: application/octet-stream" --data-binary @blob "${LOCATION}&digest=sha256:${DIGEST}"
	r := do(t, http.MethodPut, location+"&digest="+dgst.String(), blob, "Content-Type: application/octet-stream")
	expectStatus(t, "PUT blob", r, http.StatusCreated)
	expectHeader(t, "PUT blob", r, "Location", reg.URL+"/v2/hello-world/blobs/"+dgst.String())

	// curl -s -L -o /tmp/blob.tar.gz .../v2/hello-world/blobs/sha256:${DIGEST}; sha256sum /tmp/blob.tar.gz
	getBlob(t, reg.URL, "hello-world", dgst)
}

// TestTutorialImageLifecycle replays the tutorial's push, list, pull and
// purge of my/app:v1, step by step.
func TestTutorialImageLifecycle(t *testing.T) {
	reg := start(t)
	const repo = "my/app"
	img := newHandImage(t, "amd64", 2) // ~/image/{layer-1.tar.gz,layer-2.tar.gz,config.json,manifest.json}

	// push_blob my/app ~/image/layer-1.tar.gz; ... layer-2.tar.gz; ... config.json
	for _, b := range [][]byte{img.Layers[0], img.Layers[1], img.Config} {
		pushBlob(t, reg.URL, repo, b)
	}
	// curl -X PUT -H "Content-Type: application/vnd.oci.image.manifest.v1+json" --data-binary @manifest.json .../manifests/v1
	putManifest(t, reg.URL, repo, "v1", mtOCIManifest, img.Manifest)

	// curl .../v2/my/app/tags/list
	if tags := listTags(t, reg.URL, repo); !slices.Equal(tags, []string{"v1"}) {
		t.Fatalf("tags after push: %q, want [v1]", tags)
	}

	// Pull: 1. the manifest, with the tutorial's Accept header (HEAD first,
	// as clients do to learn the digest).
	accept := "Accept: " + mtOCIManifest
	r := do(t, http.MethodHead, reg.URL+"/v2/my/app/manifests/v1", nil, accept)
	expectStatus(t, "HEAD manifest v1", r, http.StatusOK)
	expectHeader(t, "HEAD manifest v1", r, "Docker-Content-Digest", digest.FromBytes(img.Manifest).String())
	expectHeader(t, "HEAD manifest v1", r, "Content-Length", strconv.Itoa(len(img.Manifest)))
	expectHeader(t, "HEAD manifest v1", r, "Content-Type", mtOCIManifest)
	r = do(t, http.MethodGet, reg.URL+"/v2/my/app/manifests/v1", nil, accept)
	expectStatus(t, "GET manifest v1", r, http.StatusOK)
	expectHeader(t, "GET manifest v1", r, "Content-Type", mtOCIManifest)
	if string(r.Body) != string(img.Manifest) {
		t.Fatalf("GET manifest v1: bytes differ from what was pushed:\n got %s\nwant %s", r.Body, img.Manifest)
	}
	var pulled manifest
	decodeJSON(t, "GET manifest v1", r, &pulled)

	// 2. CONFIG_DIGEST=$(jq -r '.config.digest' manifest.json); curl .../blobs/${CONFIG_DIGEST}
	if got := getBlob(t, reg.URL, repo, pulled.Config.Digest); string(got) != string(img.Config) {
		t.Fatalf("config differs from what was pushed")
	}
	// 3. for DIGEST in $(jq -r '.layers[].digest' manifest.json); do curl .../blobs/${DIGEST}; done
	for i, l := range pulled.Layers {
		if got := getBlob(t, reg.URL, repo, l.Digest); string(got) != string(img.Layers[i]) {
			t.Fatalf("layer %d differs from what was pushed", i)
		}
	}

	// Purge: MANIFEST_DIGEST="sha256:$(curl -H Accept... .../manifests/v1 | sha256sum)"
	r = do(t, http.MethodGet, reg.URL+"/v2/my/app/manifests/v1", nil, accept)
	expectStatus(t, "GET manifest v1", r, http.StatusOK)
	manifestDigest := digest.FromBytes(r.Body)
	expectHeader(t, "GET manifest v1", r, "Docker-Content-Digest", manifestDigest.String())

	// curl -s -i -X DELETE .../manifests/v1 (untag)
	r = do(t, http.MethodDelete, reg.URL+"/v2/my/app/manifests/v1", nil)
	expectStatus(t, "DELETE tag v1", r, http.StatusAccepted)
	if tags := listTags(t, reg.URL, repo); slices.Contains(tags, "v1") {
		t.Fatalf("tags after untag still list v1: %q", tags)
	}
	r = do(t, http.MethodGet, reg.URL+"/v2/my/app/manifests/v1", nil, accept)
	expectError(t, "GET manifest by deleted tag", r, http.StatusNotFound, "MANIFEST_UNKNOWN")

	// The manifest is still there, by digest ...
	r = do(t, http.MethodGet, reg.URL+"/v2/my/app/manifests/"+manifestDigest.String(), nil, accept)
	expectStatus(t, "GET manifest by digest after untag", r, http.StatusOK)
	if string(r.Body) != string(img.Manifest) {
		t.Fatalf("GET manifest by digest: bytes differ from what was pushed")
	}
	var byDigest manifest
	decodeJSON(t, "GET manifest by digest", r, &byDigest)

	// ... and as a blob.
	if got := getBlob(t, reg.URL, repo, manifestDigest); string(got) != string(img.Manifest) {
		t.Fatalf("GET manifest through the blob URL: bytes differ from the manifest")
	}

	// for DIGEST in $(jq -r '.config.digest, .layers[].digest' manifest-by-digest.json); do curl -X DELETE .../blobs/${DIGEST}; done
	blobs := []digest.Digest{byDigest.Config.Digest}
	for _, l := range byDigest.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		r := do(t, http.MethodDelete, reg.URL+"/v2/my/app/blobs/"+d.String(), nil)
		expectStatus(t, "DELETE blob "+d.String(), r, http.StatusAccepted)
	}
	// "At this point, fetching any of the image's layers or the config blob will start to return 404."
	for _, d := range blobs {
		r := do(t, http.MethodGet, reg.URL+"/v2/my/app/blobs/"+d.String(), nil)
		expectError(t, "GET deleted blob "+d.String(), r, http.StatusNotFound, "BLOB_UNKNOWN")
		r = do(t, http.MethodHead, reg.URL+"/v2/my/app/blobs/"+d.String(), nil)
		expectStatus(t, "HEAD deleted blob "+d.String(), r, http.StatusNotFound)
	}
}

// TestTutorialMultiPlatform replays "Inspect single- and multi-platform
// manifests": platform manifests pushed by digest, an index under a tag,
// and the top-level mediaType seen with the tutorial's Accept header.
func TestTutorialMultiPlatform(t *testing.T) {
	reg := start(t)

	// single:latest is one image manifest.
	single := newHandImage(t, "amd64", 1)
	single.push(t, reg.URL, "single", "latest")

	// multi:latest is an index over an amd64 and an arm64 manifest, each
	// pushed by digest first.
	idx := manifest{SchemaVersion: 2, MediaType: mtOCIIndex}
	for _, arch := range []string{"amd64", "arm64"} {
		img := newHandImage(t, arch, 2)
		img.push(t, reg.URL, "multi", digest.FromBytes(img.Manifest).String())
		d := describe(mtOCIManifest, img.Manifest)
		d.Platform = &platform{OS: "linux", Architecture: arch}
		idx.Manifests = append(idx.Manifests, d)
	}
	index := mustJSON(t, idx)
	putManifest(t, reg.URL, "multi", "latest", mtOCIIndex, index)

	for _, tc := range []struct {
		repo      string
		mediaType string
		check     func(t *testing.T, m manifest)
	}{
		{"single", mtOCIManifest, func(t *testing.T, m manifest) {
			if m.Config == nil || len(m.Layers) != 1 || m.Manifests != nil {
				t.Errorf("single: want config and one layer, no manifests: %+v", m)
			}
		}},
		{"multi", mtOCIIndex, func(t *testing.T, m manifest) {
			if m.Config != nil || len(m.Manifests) != 2 {
				t.Fatalf("multi: want two manifests and no config: %+v", m)
			}
			for i, want := range idx.Manifests {
				got := m.Manifests[i]
				if got.Digest != want.Digest || got.Platform == nil || *got.Platform != *want.Platform {
					t.Errorf("multi: manifests[%d] = %+v, want %+v", i, got, want)
				}
				// Each child is fetchable by digest.
				r := do(t, http.MethodGet, reg.URL+"/v2/multi/manifests/"+got.Digest.String(), nil, "Accept: "+acceptBoth)
				expectStatus(t, "GET child manifest", r, http.StatusOK)
			}
		}},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			// curl -H "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json" .../manifests/latest | jq '{mediaType, ...}'
			r := do(t, http.MethodGet, reg.URL+"/v2/"+tc.repo+"/manifests/latest", nil, "Accept: "+acceptBoth)
			expectStatus(t, "GET "+tc.repo+":latest", r, http.StatusOK)
			expectHeader(t, "GET "+tc.repo+":latest", r, "Content-Type", tc.mediaType)
			var m manifest
			decodeJSON(t, "GET "+tc.repo+":latest", r, &m)
			if m.MediaType != tc.mediaType {
				t.Errorf("mediaType %q, want %q", m.MediaType, tc.mediaType)
			}
			tc.check(t, m)
		})
	}
}

// TestChunkedUpload drives POST, PATCH, PATCH, an out-of-order PATCH, a
// status GET and the closing PUT, each step against the Location the
// previous answer gave.
func TestChunkedUpload(t *testing.T) {
	reg := start(t)
	const repo = "chunked/blob"
	blob := randomBytes(t, 3000)
	chunks := [][2]int{{0, 1000}, {1000, 2500}, {2500, 3000}} // [start, end)
	dgst := digest.FromBytes(blob)

	location := startUpload(t, reg.URL, repo)
	uuid := ""
	patch := func(t *testing.T, loc string, start, end int) *response {
		t.Helper()
		return do(t, http.MethodPatch, loc, blob[start:end],
			"Content-Type: application/octet-stream",
			"Content-Range: "+strconv.Itoa(start)+"-"+strconv.Itoa(end-1))
	}

	for i, c := range chunks[:2] {
		r := patch(t, location, c[0], c[1])
		expectStatus(t, "PATCH chunk "+strconv.Itoa(i), r, http.StatusAccepted)
		expectHeader(t, "PATCH chunk", r, "Range", "0-"+strconv.Itoa(c[1]-1))
		if uuid == "" {
			uuid = r.Header.Get("Docker-Upload-UUID")
		}
		expectHeader(t, "PATCH chunk", r, "Docker-Upload-UUID", uuid)
		location = r.Header.Get("Location")
	}

	// A chunk that does not start where the upload is gets 416, and the
	// answer says where the upload really is; the session is unharmed.
	for _, bad := range []struct {
		name       string
		start, end int
	}{
		{"rewinds", 0, 500},
		{"overlaps", 2000, 2600},
		{"leaves a gap", 2600, 3000},
	} {
		r := patch(t, location, bad.start, bad.end)
		expectError(t, "out-of-order PATCH that "+bad.name, r, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")
		expectHeader(t, "out-of-order PATCH that "+bad.name, r, "Range", "0-2499")
	}

	// GET the upload's status: 204 with the range received so far.
	r := do(t, http.MethodGet, location, nil)
	expectStatus(t, "GET upload status", r, http.StatusNoContent)
	expectHeader(t, "GET upload status", r, "Range", "0-2499")
	expectHeader(t, "GET upload status", r, "Docker-Upload-UUID", uuid)
	if r.Header.Get("Location") == "" {
		t.Errorf("GET upload status: no Location")
	}
	location = r.Header.Get("Location")

	// The closing PUT carries the last chunk and the digest.
	last := chunks[2]
	r = do(t, http.MethodPut, location+"&digest="+dgst.String(), blob[last[0]:last[1]],
		"Content-Type: application/octet-stream",
		"Content-Range: "+strconv.Itoa(last[0])+"-"+strconv.Itoa(last[1]-1))
	expectStatus(t, "PUT closing chunk", r, http.StatusCreated)
	expectHeader(t, "PUT closing chunk", r, "Docker-Content-Digest", dgst.String())
	expectHeader(t, "PUT closing chunk", r, "Location", reg.URL+"/v2/"+repo+"/blobs/"+dgst.String())

	getBlob(t, reg.URL, repo, dgst)

	// The finished session is gone.
	r = do(t, http.MethodGet, location, nil)
	expectError(t, "GET finished upload", r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
}

// TestCancelUpload: DELETE of an upload session answers 204, and the
// session is unknown afterwards.
func TestCancelUpload(t *testing.T) {
	reg := start(t)
	location := startUpload(t, reg.URL, "cancel/me")
	r := do(t, http.MethodPatch, location, randomBytes(t, 100), "Content-Type: application/octet-stream", "Content-Range: 0-99")
	expectStatus(t, "PATCH", r, http.StatusAccepted)
	location = r.Header.Get("Location")

	r = do(t, http.MethodDelete, location, nil)
	expectStatus(t, "DELETE upload", r, http.StatusNoContent)

	r = do(t, http.MethodGet, location, nil)
	expectError(t, "GET cancelled upload", r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	r = do(t, http.MethodPatch, location, []byte("more"), "Content-Type: application/octet-stream")
	expectError(t, "PATCH cancelled upload", r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	r = do(t, http.MethodDelete, location, nil)
	expectError(t, "DELETE cancelled upload", r, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
}

// TestErrorBodies checks that bad requests get the OCI error code the spec
// gives them, in an OCI JSON error body.
func TestErrorBodies(t *testing.T) {
	reg := start(t)
	const repo = "errors/repo"
	img := newHandImage(t, "amd64", 1)
	img.push(t, reg.URL, repo, "v1")
	missing := digest.FromString("nothing here")
	unknownBlob := manifest{SchemaVersion: 2, MediaType: mtOCIManifest, Config: &descriptor{MediaType: mtOCIConfig, Digest: missing, Size: 12}}
	upload := startUpload(t, reg.URL, repo)

	for _, tc := range []struct {
		name    string
		method  string
		path    string // relative to the base URL, or an absolute URL
		body    []byte
		headers []string
		status  int
		code    string
	}{
		{"invalid repository name", "GET", "/v2/Bad_Name/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"unknown repository tags", "GET", "/v2/no/such/repo/tags/list", nil, nil, 404, "NAME_UNKNOWN"},
		{"unknown tag", "GET", "/v2/" + repo + "/manifests/nope", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"unknown manifest digest", "GET", "/v2/" + repo + "/manifests/" + missing.String(), nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"invalid manifest digest", "GET", "/v2/" + repo + "/manifests/sha256:abc", nil, nil, 400, "DIGEST_INVALID"},
		{"invalid tag", "PUT", "/v2/" + repo + "/manifests/-bad", img.Manifest, []string{"Content-Type: " + mtOCIManifest}, 400, "TAG_INVALID"},
		{"unknown blob", "GET", "/v2/" + repo + "/blobs/" + missing.String(), nil, nil, 404, "BLOB_UNKNOWN"},
		{"invalid blob digest", "GET", "/v2/" + repo + "/blobs/sha256:xyz", nil, nil, 400, "DIGEST_INVALID"},
		{"delete unknown blob", "DELETE", "/v2/" + repo + "/blobs/" + missing.String(), nil, nil, 404, "BLOB_UNKNOWN"},
		{"delete unknown tag", "DELETE", "/v2/" + repo + "/manifests/nope", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"manifest not JSON", "PUT", "/v2/" + repo + "/manifests/v2", []byte("{not json"), []string{"Content-Type: " + mtOCIManifest}, 400, "MANIFEST_INVALID"},
		{"manifest with unknown blob", "PUT", "/v2/" + repo + "/manifests/v2", mustJSON(t, unknownBlob), []string{"Content-Type: " + mtOCIManifest}, 400, "MANIFEST_BLOB_UNKNOWN"},
		{"manifest under the wrong digest", "PUT", "/v2/" + repo + "/manifests/" + missing.String(), img.Manifest, []string{"Content-Type: " + mtOCIManifest}, 400, "DIGEST_INVALID"},
		{"monolithic upload with a wrong digest", "POST", "/v2/" + repo + "/blobs/uploads/?digest=" + missing.String(), []byte("other bytes"), []string{"Content-Type: application/octet-stream"}, 400, "DIGEST_INVALID"},
		{"upload finished without digest", "PUT", upload, nil, nil, 400, "DIGEST_INVALID"},
		{"unknown upload", "GET", "/v2/" + repo + "/blobs/uploads/00000000-0000-0000-0000-000000000000", nil, nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"referrers of an invalid digest", "GET", "/v2/" + repo + "/referrers/sha256:nope", nil, nil, 400, "DIGEST_INVALID"},
		{"unsupported method", "POST", "/v2/" + repo + "/manifests/v1", nil, nil, 405, "UNSUPPORTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.path
			if u[0] == '/' {
				u = reg.URL + u
			}
			r := do(t, tc.method, u, tc.body, tc.headers...)
			expectError(t, tc.method+" "+tc.path, r, tc.status, tc.code)
		})
	}

	// None of the failed writes changed visible state.
	if tags := listTags(t, reg.URL, repo); !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("tags after failed writes: %q, want [v1]", tags)
	}
	r := do(t, http.MethodGet, reg.URL+"/v2/"+repo+"/blobs/"+digest.FromString("other bytes").String(), nil)
	expectError(t, "GET blob of a failed monolithic upload", r, http.StatusNotFound, "BLOB_UNKNOWN")
}

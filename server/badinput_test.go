package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// env is a running registry and a client that does not follow redirects
// (a redirect is an answer to check, not to act on).
type env struct {
	t *testing.T
	r *wharftest.Registry
	c *http.Client
}

func newEnv(t *testing.T, opts ...wharftest.Options) *env {
	t.Helper()
	r := wharftest.Start(t, opts...)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.CloseIdleConnections)
	return &env{t: t, r: r, c: c}
}

// request describes one HTTP request. Path is relative to the registry
// ("/v2/..."); chunked hides the body's length from the transport.
type request struct {
	method  string
	path    string
	header  map[string]string
	body    []byte
	chunked bool
	// contentLength, when set, is sent instead of len(body).
	contentLength int64
}

func (e *env) do(rq request) (*http.Response, []byte) {
	e.t.Helper()
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequest(rq.method, e.r.URL+rq.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if rq.chunked && body != nil {
		req.Body = io.NopCloser(body)
		req.ContentLength = -1
	}
	if rq.contentLength != 0 {
		req.ContentLength = rq.contentLength
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	return testhttp.Do(e.t, e.c, req)
}

// wantError checks the status and, unless the request was a HEAD, that
// the body is an OCI error with code.
func wantError(t *testing.T, method string, resp *http.Response, body []byte, status int, code oci.Code) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if method == http.MethodHead {
		if len(body) != 0 {
			t.Fatalf("HEAD answered with a body: %s", body)
		}
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q, want application/json; body %q", ct, body)
	}
	if errorCode(t, body) != code {
		t.Fatalf("error body %s, want code %s", body, code)
	}
	if resp.Header.Get("Docker-Content-Digest") != "" {
		t.Fatalf("an error response carries Docker-Content-Digest %q", resp.Header.Get("Docker-Content-Digest"))
	}
}

func (e *env) mustStatus(rq request, status int) *http.Response {
	e.t.Helper()
	resp, body := e.do(rq)
	if resp.StatusCode != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", rq.method, rq.path, resp.StatusCode, status, body)
	}
	return resp
}

// pushBlob uploads content monolithically and returns its digest.
func (e *env) pushBlob(repo string, content []byte) digest.Digest {
	e.t.Helper()
	d := digest.FromBytes(content)
	e.mustStatus(request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + d.String(), body: content}, http.StatusCreated)
	return d
}

// startUpload opens a session and returns its URL (relative, with the
// query the registry put on it) and its id.
func (e *env) startUpload(repo string) (string, string) {
	e.t.Helper()
	resp := e.mustStatus(request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/"}, http.StatusAccepted)
	loc := strings.TrimPrefix(resp.Header.Get("Location"), e.r.URL)
	id := resp.Header.Get("Docker-Upload-UUID")
	if !strings.HasPrefix(loc, "/v2/"+repo+"/blobs/uploads/"+id) || id == "" {
		e.t.Fatalf("upload Location %q, id %q", loc, id)
	}
	if !strings.Contains(loc, "?") {
		loc += "?"
	}
	return loc, id
}

// uploadRange is the Range header of an upload's status.
func (e *env) uploadRange(loc string) string {
	e.t.Helper()
	resp := e.mustStatus(request{method: "GET", path: loc}, http.StatusNoContent)
	return resp.Header.Get("Range")
}

// blobHead is the status of HEAD on a blob.
func (e *env) blobHead(repo string, d digest.Digest) int {
	e.t.Helper()
	resp, _ := e.do(request{method: "HEAD", path: "/v2/" + repo + "/blobs/" + d.String()})
	return resp.StatusCode
}

func (e *env) wantNoBlob(repos []string, ds ...digest.Digest) {
	e.t.Helper()
	for _, repo := range repos {
		for _, d := range ds {
			if st := e.blobHead(repo, d); st != http.StatusNotFound {
				e.t.Fatalf("HEAD blob %s in %s: %d, want 404", d, repo, st)
			}
		}
	}
	for _, d := range ds {
		p := filepath.Join(e.r.Dir, "blobs", "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			e.t.Fatalf("blob file for %s exists (%v)", d, err)
		}
	}
}

// files lists the regular files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func (e *env) uploadFiles() []string { return files(e.t, filepath.Join(e.r.Dir, "blobs", "uploads")) }
func (e *env) blobFiles() []string   { return files(e.t, filepath.Join(e.r.Dir, "blobs", "blobs")) }

// state is everything a client or the disk can see.
type state struct {
	Catalog []string
	Tags    map[string][]string
	Blobs   []string
	Uploads []string
}

func (e *env) state() state {
	e.t.Helper()
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	resp, body := e.do(request{method: "GET", path: "/v2/_catalog"})
	if resp.StatusCode != 200 || json.Unmarshal(body, &cat) != nil {
		e.t.Fatalf("catalog: %d %s", resp.StatusCode, body)
	}
	s := state{Catalog: cat.Repositories, Tags: map[string][]string{}, Blobs: e.blobFiles(), Uploads: e.uploadFiles()}
	for _, repo := range cat.Repositories {
		var tl struct {
			Tags []string `json:"tags"`
		}
		resp, body := e.do(request{method: "GET", path: "/v2/" + repo + "/tags/list"})
		if resp.StatusCode != 200 || json.Unmarshal(body, &tl) != nil {
			e.t.Fatalf("tags of %s: %d %s", repo, resp.StatusCode, body)
		}
		s.Tags[repo] = tl.Tags
	}
	return s
}

// wantUnchanged fails unless nothing visible changed between before and
// now. Upload files may only have gone away (a failed session is dropped).
func (e *env) wantUnchanged(before state) {
	e.t.Helper()
	after := e.state()
	if !reflect.DeepEqual(before.Catalog, after.Catalog) {
		e.t.Fatalf("catalog changed: %v -> %v", before.Catalog, after.Catalog)
	}
	if !reflect.DeepEqual(before.Tags, after.Tags) {
		e.t.Fatalf("tags changed: %v -> %v", before.Tags, after.Tags)
	}
	if !reflect.DeepEqual(before.Blobs, after.Blobs) {
		e.t.Fatalf("blob files changed: %v -> %v", before.Blobs, after.Blobs)
	}
	old := map[string]bool{}
	for _, f := range before.Uploads {
		old[f] = true
	}
	for _, f := range after.Uploads {
		if !old[f] {
			e.t.Fatalf("a failed request left upload file %s (before: %v)", f, before.Uploads)
		}
	}
}

func manifestJSON(t testing.TB, config digest.Digest, configSize int, layers ...digest.Digest) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeOCIManifest,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": configSize},
		"layers":        []any{},
	}
	var ls []any
	for _, l := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": 5})
	}
	if ls != nil {
		m["layers"] = ls
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	repo      = "base/app"
	otherRepo = "other/repo"
)

// fixture is a registry with one tagged image in repo and a bare blob in
// otherRepo.
type fixture struct {
	*env
	config, layer, otherBlob digest.Digest
	configBody               []byte
	manifest                 []byte
	manifestDigest           digest.Digest
}

func newFixture(t *testing.T, opts ...wharftest.Options) *fixture {
	e := newEnv(t, opts...)
	f := &fixture{env: e, configBody: []byte(`{"architecture":"amd64","os":"linux"}`)}
	f.config = e.pushBlob(repo, f.configBody)
	f.layer = e.pushBlob(repo, []byte("layer"))
	f.otherBlob = e.pushBlob(otherRepo, []byte("other"))
	f.manifest = manifestJSON(t, f.config, len(f.configBody), f.layer)
	f.manifestDigest = digest.FromBytes(f.manifest)
	e.mustStatus(request{method: "PUT", path: "/v2/" + repo + "/manifests/v1",
		header: map[string]string{"Content-Type": oci.MediaTypeOCIManifest}, body: f.manifest}, http.StatusCreated)
	return f
}

type badCase struct {
	name string
	// setup runs before the state snapshot; what it returns replaces
	// "{u}" in the request path (an upload URL, typically).
	setup  func(f *fixture) string
	req    request
	status int
	code   oci.Code
	// allow is the expected Allow header of a 405.
	allow string
	// after makes case-specific checks; u is what setup returned.
	after func(f *fixture, u string, resp *http.Response)
	// inOtherRepo sends the request to otherRepo instead of repo.
	inOtherRepo bool
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	d := f.manifestDigest.String()
	blob := f.config.String()
	ct := map[string]string{"Content-Type": oci.MediaTypeOCIManifest}
	hello := []byte("hello, world")
	helloD := digest.FromBytes(hello)
	wrongD := digest.FromString("something else")
	unknownD := digest.FromString("never uploaded")
	hex := helloD.Encoded()
	validRepos := []string{repo, otherRepo}
	// withSession opens an upload in repo holding "hello".
	withSession := func(f *fixture) string {
		loc, _ := f.startUpload(repo)
		f.mustStatus(request{method: "PATCH", path: loc, body: []byte("hello"),
			header: map[string]string{"Content-Range": "0-4"}}, http.StatusAccepted)
		return loc
	}
	emptySession := func(f *fixture) string {
		loc, _ := f.startUpload(repo)
		return loc
	}
	// sessionIntact checks a session that refused a chunk still holds
	// "hello" and can be finished.
	sessionIntact := func(f *fixture, u string, _ *http.Response) {
		if got := f.uploadRange(u); got != "0-4" {
			f.t.Fatalf("session Range %q after a refused chunk, want 0-4", got)
		}
		f.wantNoBlob(validRepos, digest.FromString("hello"))
	}
	sessionGone := func(f *fixture, u string, _ *http.Response) {
		resp, body := f.do(request{method: "GET", path: u})
		wantError(f.t, "GET", resp, body, http.StatusNotFound, oci.CodeBlobUploadUnknown)
		id := strings.TrimPrefix(strings.SplitN(u, "?", 2)[0], "/v2/"+repo+"/blobs/uploads/")
		if _, err := os.Stat(filepath.Join(f.r.Dir, "blobs", "uploads", id)); !os.IsNotExist(err) {
			f.t.Fatalf("upload file %s still exists (%v)", id, err)
		}
	}
	noBlob := func(ds ...digest.Digest) func(*fixture, string, *http.Response) {
		return func(f *fixture, _ string, _ *http.Response) { f.wantNoBlob(validRepos, ds...) }
	}
	noManifest := func(ds ...digest.Digest) func(*fixture, string, *http.Response) {
		return func(f *fixture, _ string, _ *http.Response) {
			for _, d := range ds {
				resp, body := f.do(request{method: "GET", path: "/v2/" + repo + "/manifests/" + d.String()})
				wantError(f.t, "GET", resp, body, http.StatusNotFound, oci.CodeManifestUnknown)
			}
		}
	}
	both := func(fs ...func(*fixture, string, *http.Response)) func(*fixture, string, *http.Response) {
		return func(f *fixture, u string, r *http.Response) {
			for _, fn := range fs {
				fn(f, u, r)
			}
		}
	}
	// refusedRange is a PATCH of "world" to a session holding "hello"
	// refused for its Content-Range, the session left as it was.
	refusedRange := func(name, contentRange string) badCase {
		return badCase{name: name, setup: withSession,
			req:    request{method: "PATCH", path: "{u}", body: []byte("world"), header: map[string]string{"Content-Range": contentRange}},
			status: 416, code: oci.CodeRangeInvalid, after: sessionIntact}
	}
	index := func(children ...digest.Digest) []byte {
		var ms []any
		for _, c := range children {
			ms = append(ms, map[string]any{"mediaType": oci.MediaTypeOCIManifest, "digest": c, "size": 10,
				"platform": map[string]string{"os": "linux", "architecture": "amd64"}})
		}
		b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex, "manifests": ms})
		return b
	}

	cases := []badCase{
		// ---- names ----
		{name: "uppercase name on tags", req: request{method: "GET", path: "/v2/Base/app/tags/list"}, status: 400, code: oci.CodeNameInvalid},
		{name: "uppercase name on manifest GET", req: request{method: "GET", path: "/v2/BASE/manifests/v1"}, status: 400, code: oci.CodeNameInvalid},
		{name: "invalid name on manifest HEAD", req: request{method: "HEAD", path: "/v2/a..b/manifests/v1"}, status: 400},
		{name: "invalid name on manifest PUT", req: request{method: "PUT", path: "/v2/new_/manifests/v1", header: ct, body: f.manifest},
			status: 400, code: oci.CodeNameInvalid},
		{name: "invalid name on blob GET", req: request{method: "GET", path: "/v2/-a/blobs/" + blob}, status: 400, code: oci.CodeNameInvalid},
		{name: "invalid name on upload start", req: request{method: "POST", path: "/v2/a___b/blobs/uploads/"}, status: 400, code: oci.CodeNameInvalid},
		{name: "invalid name on monolithic upload", req: request{method: "POST", path: "/v2/new.-repo/blobs/uploads/?digest=" + helloD.String(), body: hello},
			status: 400, code: oci.CodeNameInvalid, after: noBlob(helloD)},
		{name: "invalid name on referrers", req: request{method: "GET", path: "/v2/a_/referrers/" + d}, status: 400, code: oci.CodeNameInvalid},
		// The batch contract's one 404 for "not found" (TestBatchEndpointInvalidNameIs404).
		{name: "invalid name on batch endpoint", req: request{method: "GET", path: "/v2/A/manifests/v1/blobs"}, status: 404, code: oci.CodeManifestUnknown},
		{name: "name with a trailing separator component", req: request{method: "GET", path: "/v2/base/app./tags/list"}, status: 400, code: oci.CodeNameInvalid},
		{name: "name over 255 chars", req: request{method: "PUT", path: "/v2/" + strings.Repeat("a", 256) + "/manifests/v1", header: ct, body: f.manifest},
			status: 400, code: oci.CodeNameInvalid},
		{name: "name of exactly 255 chars is valid", req: request{method: "GET",
			path: "/v2/" + strings.Repeat("ab/", 84) + "abc/blobs/" + blob}, status: 404, code: oci.CodeBlobUnknown},
		{name: "name with an empty component", req: request{method: "GET", path: "/v2/base//app/tags/list"}, status: 400, code: oci.CodeNameInvalid},
		{name: "name with an empty component on manifest PUT", req: request{method: "PUT", path: "/v2/base//app/manifests/v2", header: ct, body: f.manifest},
			status: 400, code: oci.CodeNameInvalid},
		{name: "name with a dot component", req: request{method: "PUT", path: "/v2/base/./app/manifests/v2", header: ct, body: f.manifest},
			status: 400, code: oci.CodeNameInvalid},
		{name: "name with a dot-dot component", req: request{method: "GET", path: "/v2/other/../base/app/manifests/v1"}, status: 400, code: oci.CodeNameInvalid},

		// ---- tags and references ----
		{name: "tag with a leading dot on PUT", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/.hidden", header: ct, body: f.manifest},
			status: 400, code: oci.CodeTagInvalid},
		{name: "tag with a leading dash on PUT", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/-v2", header: ct, body: f.manifest},
			status: 400, code: oci.CodeTagInvalid},
		{name: "tag of 129 chars on PUT", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/" + strings.Repeat("t", 129), header: ct, body: f.manifest},
			status: 400, code: oci.CodeTagInvalid},
		{name: "tag of 128 chars with unknown blob still validates the manifest", req: request{method: "PUT",
			path: "/v2/" + repo + "/manifests/" + strings.Repeat("t", 128), header: ct, body: manifestJSON(t, unknownD, 3)},
			status: 400, code: oci.CodeManifestBlobUnknown},
		{name: "invalid tag on GET", req: request{method: "GET", path: "/v2/" + repo + "/manifests/-x"}, status: 400, code: oci.CodeTagInvalid},
		{name: "invalid tag on DELETE", req: request{method: "DELETE", path: "/v2/" + repo + "/manifests/.x"}, status: 400, code: oci.CodeTagInvalid},
		{name: "reference with a colon that is no digest", req: request{method: "GET", path: "/v2/" + repo + "/manifests/v1:latest"},
			status: 400, code: oci.CodeDigestInvalid},
		{name: "manifest GET of a missing tag", req: request{method: "GET", path: "/v2/" + repo + "/manifests/missing"}, status: 404, code: oci.CodeManifestUnknown},
		{name: "manifest HEAD of a missing tag", req: request{method: "HEAD", path: "/v2/" + repo + "/manifests/missing"}, status: 404},
		{name: "manifest GET of a missing digest", req: request{method: "GET", path: "/v2/" + repo + "/manifests/" + unknownD.String()}, status: 404, code: oci.CodeManifestUnknown},
		{name: "manifest GET in an unknown repository", req: request{method: "GET", path: "/v2/no/such/manifests/v1"}, status: 404, code: oci.CodeManifestUnknown},
		{name: "manifest GET of another repository's manifest", req: request{method: "GET", path: "/v2/" + otherRepo + "/manifests/" + d}, status: 404, code: oci.CodeManifestUnknown},
		{name: "manifest DELETE of a missing tag", req: request{method: "DELETE", path: "/v2/" + repo + "/manifests/missing"}, status: 404, code: oci.CodeManifestUnknown},
		{name: "manifest DELETE of a missing digest", req: request{method: "DELETE", path: "/v2/" + repo + "/manifests/" + unknownD.String()}, status: 404, code: oci.CodeManifestUnknown},

		// ---- digests ----
		{name: "short digest on blob GET", req: request{method: "GET", path: "/v2/" + repo + "/blobs/sha256:abc"}, status: 400, code: oci.CodeDigestInvalid},
		{name: "uppercase digest on blob GET", req: request{method: "GET", path: "/v2/" + repo + "/blobs/sha256:" + strings.ToUpper(f.config.Encoded())}, status: 400, code: oci.CodeDigestInvalid},
		{name: "unknown algorithm on blob GET", req: request{method: "GET", path: "/v2/" + repo + "/blobs/md5:" + hex[:32]}, status: 400, code: oci.CodeDigestInvalid},
		{name: "missing colon on blob GET", req: request{method: "GET", path: "/v2/" + repo + "/blobs/sha256" + hex}, status: 400, code: oci.CodeDigestInvalid},
		{name: "invalid digest on blob HEAD", req: request{method: "HEAD", path: "/v2/" + repo + "/blobs/sha256:xyz"}, status: 400},
		{name: "invalid digest on blob DELETE", req: request{method: "DELETE", path: "/v2/" + repo + "/blobs/sha256:" + hex[:60]}, status: 400, code: oci.CodeDigestInvalid},
		{name: "invalid digest on manifest GET", req: request{method: "GET", path: "/v2/" + repo + "/manifests/sha256:" + hex + "00"}, status: 400, code: oci.CodeDigestInvalid},
		{name: "invalid digest on manifest PUT", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/sha256:zz", header: ct, body: f.manifest},
			status: 400, code: oci.CodeDigestInvalid},
		{name: "invalid digest on referrers", req: request{method: "GET", path: "/v2/" + repo + "/referrers/sha256:1"}, status: 400, code: oci.CodeDigestInvalid},
		{name: "unknown blob GET", req: request{method: "GET", path: "/v2/" + repo + "/blobs/" + unknownD.String()}, status: 404, code: oci.CodeBlobUnknown},
		{name: "blob of another repository", req: request{method: "GET", path: "/v2/" + repo + "/blobs/" + f.otherBlob.String()}, status: 404, code: oci.CodeBlobUnknown},
		{name: "unknown blob DELETE", req: request{method: "DELETE", path: "/v2/" + repo + "/blobs/" + unknownD.String()}, status: 404, code: oci.CodeBlobUnknown},
		{name: "invalid digest on monolithic upload", req: request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=sha256:" + hex[:10], body: hello},
			status: 400, code: oci.CodeDigestInvalid, after: noBlob(helloD)},
		{name: "empty digest on monolithic upload", req: request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=", body: hello},
			status: 400, code: oci.CodeDigestInvalid, after: noBlob(helloD)},
		{name: "invalid mount digest", req: request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?mount=sha256:1&from=" + otherRepo},
			status: 400, code: oci.CodeDigestInvalid},
		{name: "unsupported digest-algorithm", req: request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest-algorithm=md5"},
			status: 400, code: oci.CodeDigestInvalid},

		// ---- upload sequences ----
		{name: "monolithic upload digest mismatch", req: request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + wrongD.String(), body: hello},
			status: 400, code: oci.CodeDigestInvalid, after: noBlob(helloD, wrongD)},
		{name: "monolithic upload digest mismatch, chunked body", req: request{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + wrongD.String(), body: hello, chunked: true},
			status: 400, code: oci.CodeDigestInvalid, after: noBlob(helloD, wrongD)},
		{name: "monolithic sha512 upload digest mismatch", req: request{method: "POST",
			path: "/v2/" + repo + "/blobs/uploads/?digest=" + digest.SHA512.FromString("else").String(), body: hello},
			status: 400, code: oci.CodeDigestInvalid, after: noBlob(helloD, digest.SHA512.FromBytes(hello))},
		{name: "PUT upload without digest", setup: withSession, req: request{method: "PUT", path: "{u}"},
			status: 400, code: oci.CodeDigestInvalid, after: noBlob(digest.FromString("hello"))},
		{name: "PUT upload with a body and without digest", setup: withSession, req: request{method: "PUT", path: "{u}", body: []byte(", world")},
			status: 400, code: oci.CodeDigestInvalid, after: both(noBlob(digest.FromString("hello"), helloD), sessionIntact)},
		{name: "PUT upload with an invalid digest", setup: withSession, req: request{method: "PUT", path: "{u}&digest=sha256:nothex"},
			status: 400, code: oci.CodeDigestInvalid, after: sessionIntact},
		{name: "PUT upload digest mismatch", setup: withSession, req: request{method: "PUT", path: "{u}&digest=" + wrongD.String()},
			status: 400, code: oci.CodeDigestInvalid, after: both(sessionGone, noBlob(wrongD, digest.FromString("hello")))},
		{name: "PUT upload digest mismatch with a final chunk", setup: withSession,
			req:    request{method: "PUT", path: "{u}&digest=" + wrongD.String(), body: []byte(", world"), header: map[string]string{"Content-Range": "5-11"}},
			status: 400, code: oci.CodeDigestInvalid, after: both(sessionGone, noBlob(wrongD, helloD))},
		{name: "PUT upload sha512 digest mismatch on a sha256 session", setup: withSession,
			req:    request{method: "PUT", path: "{u}&digest=" + digest.SHA512.FromString("x").String()},
			status: 400, code: oci.CodeDigestInvalid, after: both(sessionGone, noBlob(digest.SHA512.FromString("hello")))},
		{name: "monolithic PUT on an empty session, digest mismatch", setup: emptySession,
			req:    request{method: "PUT", path: "{u}&digest=" + wrongD.String(), body: hello},
			status: 400, code: oci.CodeDigestInvalid, after: both(sessionGone, noBlob(helloD, wrongD))},
		{name: "PATCH out of order", setup: withSession,
			req:    request{method: "PATCH", path: "{u}", body: []byte("world"), header: map[string]string{"Content-Range": "10-14"}},
			status: 416, code: oci.CodeRangeInvalid,
			after: func(f *fixture, u string, resp *http.Response) {
				if got := resp.Header.Get("Range"); got != "0-4" {
					f.t.Fatalf("416 carries Range %q, want 0-4", got)
				}
				if resp.Header.Get("Location") == "" {
					f.t.Fatal("416 carries no Location")
				}
				sessionIntact(f, u, resp)
			}},
		{name: "PATCH rewriting from the start", setup: withSession,
			req:    request{method: "PATCH", path: "{u}", body: []byte("HELLO"), header: map[string]string{"Content-Range": "0-4"}},
			status: 416, code: oci.CodeRangeInvalid, after: sessionIntact},
		refusedRange("PATCH malformed Content-Range", "five-nine"),
		refusedRange("PATCH Content-Range end before start", "9-5"),
		refusedRange("PATCH Content-Range with a sign", "+5-+9"),
		{name: "PATCH Content-Range whose length overflows", setup: emptySession,
			req:    request{method: "PATCH", path: "{u}", body: []byte("world"), chunked: true, header: map[string]string{"Content-Range": "0-9223372036854775807"}},
			status: 416, code: oci.CodeRangeInvalid},
		refusedRange("PATCH Content-Length not matching Content-Range", "5-19"),
		{name: "PATCH body shorter than its Content-Range", setup: withSession,
			req:    request{method: "PATCH", path: "{u}", body: []byte("world"), chunked: true, header: map[string]string{"Content-Range": "5-19"}},
			status: 400, code: oci.CodeSizeInvalid, after: sessionIntact},
		{name: "PUT final chunk malformed Content-Range", setup: withSession,
			req:    request{method: "PUT", path: "{u}&digest=" + helloD.String(), body: []byte(", world"), header: map[string]string{"Content-Range": "bytes"}},
			status: 416, code: oci.CodeRangeInvalid, after: both(sessionIntact, noBlob(helloD))},
		{name: "PUT final chunk out of order", setup: withSession,
			req:    request{method: "PUT", path: "{u}&digest=" + helloD.String(), body: []byte(", world"), header: map[string]string{"Content-Range": "6-12"}},
			status: 416, code: oci.CodeRangeInvalid, after: both(sessionIntact, noBlob(helloD))},
		{name: "unknown upload uuid GET", req: request{method: "GET", path: "/v2/" + repo + "/blobs/uploads/no-such-upload"}, status: 404, code: oci.CodeBlobUploadUnknown},
		{name: "unknown upload uuid PATCH", req: request{method: "PATCH", path: "/v2/" + repo + "/blobs/uploads/no-such-upload", body: hello},
			status: 404, code: oci.CodeBlobUploadUnknown},
		{name: "unknown upload uuid PUT", req: request{method: "PUT", path: "/v2/" + repo + "/blobs/uploads/no-such-upload?digest=" + helloD.String(), body: hello},
			status: 404, code: oci.CodeBlobUploadUnknown, after: noBlob(helloD)},
		{name: "unknown upload uuid DELETE", req: request{method: "DELETE", path: "/v2/" + repo + "/blobs/uploads/no-such-upload"}, status: 404, code: oci.CodeBlobUploadUnknown},
		{name: "upload uuid with dots", req: request{method: "PATCH", path: "/v2/" + repo + "/blobs/uploads/a.b", body: hello}, status: 404, code: oci.CodeBlobUploadUnknown},
		{name: "upload of another repository", setup: withSession,
			req: request{method: "PATCH", path: "{u}", body: []byte("world")}, status: 404, code: oci.CodeBlobUploadUnknown,
			inOtherRepo: true, after: sessionIntact},
		{name: "upload after cancel", setup: func(f *fixture) string {
			loc := withSession(f)
			f.mustStatus(request{method: "DELETE", path: loc}, http.StatusNoContent)
			return loc
		}, req: request{method: "PUT", path: "{u}&digest=" + digest.FromString("hello").String()}, status: 404, code: oci.CodeBlobUploadUnknown,
			after: noBlob(digest.FromString("hello"))},
		{name: "upload after completion", setup: func(f *fixture) string {
			loc, _ := f.startUpload(repo)
			f.mustStatus(request{method: "PUT", path: loc + "&digest=" + f.config.String(), body: f.configBody}, http.StatusCreated)
			return loc
		}, req: request{method: "PATCH", path: "{u}", body: []byte("more")}, status: 404, code: oci.CodeBlobUploadUnknown},

		// ---- blob ranges ----
		{name: "blob Range past the end", req: request{method: "GET", path: "/v2/" + repo + "/blobs/" + blob, header: map[string]string{"Range": "bytes=1000-2000"}},
			status: 416, code: oci.CodeRangeInvalid,
			after: func(f *fixture, _ string, resp *http.Response) {
				if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes */%d", len(f.configBody)); got != want {
					f.t.Fatalf("Content-Range %q, want %q", got, want)
				}
			}},
		{name: "blob Range malformed", req: request{method: "GET", path: "/v2/" + repo + "/blobs/" + blob, header: map[string]string{"Range": "bytes=abc"}},
			status: 416, code: oci.CodeRangeInvalid},
		{name: "blob Range with the wrong unit", req: request{method: "GET", path: "/v2/" + repo + "/blobs/" + blob, header: map[string]string{"Range": "pages=1-2"}},
			status: 416, code: oci.CodeRangeInvalid},

		// ---- manifests ----
		{name: "manifest with an unknown blob", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct,
			body: manifestJSON(t, f.config, len(f.configBody), f.layer, unknownD)},
			status: 400, code: oci.CodeManifestBlobUnknown, after: noManifest(digest.FromBytes(manifestJSON(t, f.config, len(f.configBody), f.layer, unknownD)))},
		{name: "manifest with an unknown config", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct, body: manifestJSON(t, unknownD, 2)},
			status: 400, code: oci.CodeManifestBlobUnknown},
		{name: "manifest with a blob of another repository", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct,
			body: manifestJSON(t, f.config, len(f.configBody), f.otherBlob)}, status: 400, code: oci.CodeManifestBlobUnknown},
		{name: "manifest in a new repository with unknown blobs", req: request{method: "PUT", path: "/v2/brand/new/manifests/v1", header: ct, body: f.manifest},
			status: 400, code: oci.CodeManifestBlobUnknown},
		{name: "index with an unknown child", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/multi",
			header: map[string]string{"Content-Type": oci.MediaTypeOCIIndex}, body: index(f.manifestDigest, unknownD)},
			status: 400, code: oci.CodeManifestBlobUnknown, after: noManifest(digest.FromBytes(index(f.manifestDigest, unknownD)))},
		{name: "manifest invalid JSON", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct, body: []byte(`{"schemaVersion":2,`)},
			status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest empty body", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct}, status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest schema1", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2",
			header: map[string]string{"Content-Type": oci.MediaTypeDockerSchema1Signed},
			body:   []byte(`{"schemaVersion":1,"name":"base/app","tag":"v2","fsLayers":[{"blobSum":"` + blob + `"}]}`)},
			status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest missing config", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct,
			body: []byte(`{"schemaVersion":2,"mediaType":"` + oci.MediaTypeOCIManifest + `","layers":[]}`)}, status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest Content-Type mismatch", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2",
			header: map[string]string{"Content-Type": oci.MediaTypeDockerManifest}, body: f.manifest}, status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest negative size", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct,
			body: bytes.Replace(f.manifest, []byte(`"size":5`), []byte(`"size":-5`), 1)}, status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest bad layer digest", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/v2", header: ct,
			body: bytes.Replace(f.manifest, []byte(f.layer.String()), []byte("sha256:"+strings.ToUpper(f.layer.Encoded())), 1)}, status: 400, code: oci.CodeManifestInvalid},
		{name: "manifest PUT by a digest that does not match", req: request{method: "PUT", path: "/v2/" + repo + "/manifests/" + wrongD.String(), header: ct,
			body: manifestJSON(t, f.config, len(f.configBody))},
			status: 400, code: oci.CodeDigestInvalid, after: noManifest(wrongD, digest.FromBytes(manifestJSON(t, f.config, len(f.configBody))))},
		{name: "manifest PUT by a sha512 digest that does not match", req: request{method: "PUT",
			path: "/v2/" + repo + "/manifests/" + digest.SHA512.FromString("x").String(), header: ct, body: manifestJSON(t, f.config, len(f.configBody))},
			status: 400, code: oci.CodeDigestInvalid, after: noManifest(digest.FromBytes(manifestJSON(t, f.config, len(f.configBody))))},

		// ---- methods ----
		{name: "POST on a manifest", req: request{method: "POST", path: "/v2/" + repo + "/manifests/v1"}, status: 405, code: oci.CodeUnsupported, allow: "GET, HEAD, PUT, DELETE"},
		{name: "PATCH on a manifest", req: request{method: "PATCH", path: "/v2/" + repo + "/manifests/v1", body: f.manifest}, status: 405, code: oci.CodeUnsupported, allow: "GET, HEAD, PUT, DELETE"},
		{name: "PUT on a blob", req: request{method: "PUT", path: "/v2/" + repo + "/blobs/" + helloD.String(), body: hello}, status: 405, code: oci.CodeUnsupported,
			allow: "GET, HEAD, DELETE", after: noBlob(helloD)},
		{name: "GET on upload start", req: request{method: "GET", path: "/v2/" + repo + "/blobs/uploads/"}, status: 405, code: oci.CodeUnsupported, allow: "POST"},
		{name: "PUT on upload start", req: request{method: "PUT", path: "/v2/" + repo + "/blobs/uploads/?digest=" + helloD.String(), body: hello},
			status: 405, code: oci.CodeUnsupported, allow: "POST", after: noBlob(helloD)},
		{name: "POST on an upload", setup: emptySession, req: request{method: "POST", path: "{u}"}, status: 405, code: oci.CodeUnsupported, allow: "GET, PATCH, PUT, DELETE"},
		{name: "DELETE on tags", req: request{method: "DELETE", path: "/v2/" + repo + "/tags/list"}, status: 405, code: oci.CodeUnsupported, allow: "GET, HEAD"},
		{name: "POST on catalog", req: request{method: "POST", path: "/v2/_catalog"}, status: 405, code: oci.CodeUnsupported, allow: "GET, HEAD"},
		{name: "DELETE on base", req: request{method: "DELETE", path: "/v2/"}, status: 405, code: oci.CodeUnsupported, allow: "GET, HEAD"},
		{name: "PUT on referrers", req: request{method: "PUT", path: "/v2/" + repo + "/referrers/" + d}, status: 405, code: oci.CodeUnsupported, allow: "GET, HEAD"},

		// ---- listing ----
		{name: "tags of an unknown repository", req: request{method: "GET", path: "/v2/no/such/tags/list"}, status: 404, code: oci.CodeNameUnknown},
		{name: "tags with negative n", req: request{method: "GET", path: "/v2/" + repo + "/tags/list?n=-1"}, status: 400, code: oci.CodeUnsupported},
		{name: "tags with non-numeric n", req: request{method: "GET", path: "/v2/" + repo + "/tags/list?n=ten"}, status: 400, code: oci.CodeUnsupported},
		{name: "tags with a huge n", req: request{method: "GET", path: "/v2/" + repo + "/tags/list?n=99999999999999999999999"}, status: 400, code: oci.CodeUnsupported},
		{name: "catalog with bad n", req: request{method: "GET", path: "/v2/_catalog?n=1.5"}, status: 400, code: oci.CodeUnsupported},
		{name: "unknown endpoint", req: request{method: "GET", path: "/v2/" + repo + "/layers/x"}, status: 404, code: oci.CodeNameUnknown},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.env.t = t
			defer func() { f.env.t = nil }()
			var u string
			if tc.setup != nil {
				u = tc.setup(f)
			}
			before := f.state()
			rq := tc.req
			rq.path = strings.ReplaceAll(rq.path, "{u}", u)
			if tc.inOtherRepo {
				rq.path = strings.Replace(rq.path, "/v2/"+repo+"/", "/v2/"+otherRepo+"/", 1)
			}
			resp, body := f.do(rq)
			wantError(t, rq.method, resp, body, tc.status, tc.code)
			if tc.allow != "" && resp.Header.Get("Allow") != tc.allow {
				t.Fatalf("Allow %q, want %q", resp.Header.Get("Allow"), tc.allow)
			}
			f.wantUnchanged(before)
			// The image the fixture pushed is still whole.
			f.mustStatus(request{method: "GET", path: "/v2/" + repo + "/manifests/v1"}, http.StatusOK)
			if tc.after != nil {
				tc.after(f, u, resp)
			}
		})
	}
}

func TestBadInputManifestTooLarge(t *testing.T) {
	const limit = 512
	f := newFixture(t, wharftest.Options{Registry: registry.Options{MaxManifestBytes: limit}})
	// A valid manifest padded with annotations past the limit.
	var m map[string]any
	if err := json.Unmarshal(f.manifest, &m); err != nil {
		t.Fatal(err)
	}
	m["annotations"] = map[string]string{"pad": strings.Repeat("x", limit)}
	big, _ := json.Marshal(m)
	ct := map[string]string{"Content-Type": oci.MediaTypeOCIManifest}
	for _, tc := range []struct {
		name string
		rq   request
	}{
		{"by tag", request{method: "PUT", path: "/v2/" + repo + "/manifests/big", header: ct, body: big}},
		{"by tag, chunked", request{method: "PUT", path: "/v2/" + repo + "/manifests/big", header: ct, body: big, chunked: true}},
		{"by digest", request{method: "PUT", path: "/v2/" + repo + "/manifests/" + digest.FromBytes(big).String(), header: ct, body: big}},
		{"one byte over, not JSON", request{method: "PUT", path: "/v2/" + repo + "/manifests/big", header: ct, body: big[:limit+1]}},
		{"one byte over, chunked", request{method: "PUT", path: "/v2/" + repo + "/manifests/big", header: ct, body: big[:limit+1], chunked: true}},
	} {
		rq := tc.rq
		t.Run(tc.name, func(t *testing.T) {
			f.env.t = t
			before := f.state()
			resp, body := f.do(rq)
			wantError(t, rq.method, resp, body, http.StatusRequestEntityTooLarge, oci.CodeManifestInvalid)
			f.wantUnchanged(before)
			resp, body = f.do(request{method: "GET", path: "/v2/" + repo + "/manifests/" + digest.FromBytes(big).String()})
			wantError(t, "GET", resp, body, http.StatusNotFound, oci.CodeManifestUnknown)
		})
	}
	// At the limit exactly, a manifest is accepted.
	f.env.t = t
	m["annotations"] = map[string]string{"pad": ""}
	exact, _ := json.Marshal(m)
	m["annotations"] = map[string]string{"pad": strings.Repeat("x", limit-len(exact))}
	exact, _ = json.Marshal(m)
	if len(exact) != limit {
		t.Fatalf("padded manifest is %d bytes, want %d", len(exact), limit)
	}
	f.mustStatus(request{method: "PUT", path: "/v2/" + repo + "/manifests/exact", header: ct, body: exact}, http.StatusCreated)
}

// rawRequest writes head and then partial bytes of a body on a raw
// connection, and closes it without reading a response: a client that
// died mid-upload.
func rawRequest(t *testing.T, r *wharftest.Registry, head string, partial []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", r.Host)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(partial); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
}

// drain closes the test server, which waits for every handler to return,
// so what the server did about a dead connection can be inspected.
func drain(r *wharftest.Registry) { r.Stop() }

// sessions counts the registry's upload sessions (by expiring them all).
func sessions(t *testing.T, r *wharftest.Registry) int {
	t.Helper()
	n, err := r.Registry.ExpireUploads(context.Background(), -1<<62)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInterruptedMonolithicUpload(t *testing.T) {
	e := newEnv(t)
	content := bytes.Repeat([]byte("0123456789"), 100)
	d := digest.FromBytes(content)
	e.pushBlob("keep/me", []byte("unrelated"))
	before := e.state()

	for _, path := range []string{
		"/v2/" + repo + "/blobs/uploads/?digest=" + d.String(),
	} {
		head := "POST " + path + " HTTP/1.1\r\nHost: " + e.r.Host + "\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
		rawRequest(t, e.r, head, content[:10])
	}
	drain(e.r)

	ctx := context.Background()
	if _, err := e.r.Registry.StatBlob(ctx, repo, d); !isCode(err, oci.CodeBlobUnknown) {
		t.Fatalf("StatBlob after an interrupted upload: %v, want BLOB_UNKNOWN", err)
	}
	if got := e.uploadFiles(); len(got) != 0 {
		t.Fatalf("upload files left: %v", got)
	}
	if got := e.blobFiles(); !reflect.DeepEqual(got, before.Blobs) {
		t.Fatalf("blob files changed: %v -> %v", before.Blobs, got)
	}
	repos, err := e.r.Registry.Repositories(ctx, "", -1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(repos, before.Catalog) {
		t.Fatalf("catalog changed: %v -> %v", before.Catalog, repos)
	}
	if n := sessions(t, e.r); n != 0 {
		t.Fatalf("%d upload sessions left", n)
	}
}

func TestInterruptedChunkKeepsSession(t *testing.T) {
	e := newEnv(t)
	loc, id := e.startUpload(repo)
	e.mustStatus(request{method: "PATCH", path: loc, body: []byte("hello"), header: map[string]string{"Content-Range": "0-4"}}, http.StatusAccepted)

	head := "PATCH " + loc + " HTTP/1.1\r\nHost: " + e.r.Host + "\r\nContent-Type: application/octet-stream\r\nContent-Range: 5-1004\r\nContent-Length: 1000\r\n\r\n"
	rawRequest(t, e.r, head, []byte("0123456789"))
	drain(e.r)

	u, err := e.r.Registry.Upload(context.Background(), repo, id)
	if err != nil {
		t.Fatalf("session lost after an interrupted chunk: %v", err)
	}
	if u.Offset != 5 {
		t.Fatalf("session offset %d after an interrupted chunk, want 5", u.Offset)
	}
	// The session resumes where it was, and the cut-off bytes are gone.
	want := []byte("hello, world")
	rest := bytes.NewReader(want[5:])
	if _, err := e.r.Registry.FinishUpload(context.Background(), repo, id, digest.FromBytes(want),
		registry.Chunk{Body: rest, Start: 5, Length: int64(len(want) - 5)}); err != nil {
		t.Fatalf("finishing the resumed upload: %v", err)
	}
}

func isCode(err error, code oci.Code) bool {
	return err != nil && oci.AsError(err).Code == code
}

// TestBadInputRawPaths sends request lines Go's client would clean or
// refuse, straight over a connection.
func TestBadInputRawPaths(t *testing.T) {
	f := newFixture(t)
	before := f.state()
	for _, tc := range []struct {
		line   string
		status int
		code   oci.Code
	}{
		{"GET /v2/base//app/tags/list", 400, oci.CodeNameInvalid},
		{"GET /v2/base/../base/app/manifests/v1", 400, oci.CodeNameInvalid},
		{"GET /v2/base/app/manifests/v1%00", 400, oci.CodeTagInvalid},
		{"GET /v2/base%2Fapp/tags/list", 200, ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			f.env.t = t
			conn, err := net.Dial("tcp", f.r.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.line, f.r.Host)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.code == "" {
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
				}
				return
			}
			wantError(t, "GET", resp, body, tc.status, tc.code)
		})
	}
	f.env.t = t
	f.wantUnchanged(before)
}

func TestInterruptedManifestPut(t *testing.T) {
	f := newFixture(t)
	before := f.state()
	m := manifestJSON(t, f.config, len(f.configBody))
	head := fmt.Sprintf("PUT /v2/%s/manifests/cut HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		repo, f.r.Host, oci.MediaTypeOCIManifest, len(m)+100)
	rawRequest(t, f.r, head, m)
	drain(f.r)

	ctx := context.Background()
	tags, err := f.r.Registry.Tags(ctx, repo, "", -1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tags, before.Tags[repo]) {
		t.Fatalf("tags changed after an interrupted manifest PUT: %v -> %v", before.Tags[repo], tags)
	}
	if _, err := f.r.Registry.Manifest(ctx, repo, oci.Reference{Digest: digest.FromBytes(m)}); !isCode(err, oci.CodeManifestUnknown) {
		t.Fatalf("manifest stored from a cut-off body: %v", err)
	}
}

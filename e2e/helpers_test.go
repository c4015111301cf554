// Package e2e drives a real embedded Wharf registry over loopback HTTP: with
// go-containerregistry as a real client would, and with plain net/http
// replaying the registry tutorial's curl steps.
package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
)

// Media types used throughout the tests.
const (
	mtOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex    = "application/vnd.oci.image.index.v1+json"
	mtOCIConfig   = "application/vnd.oci.image.config.v1+json"
	mtOCILayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtOCIEmpty    = "application/vnd.oci.empty.v1+json"

	// acceptBoth is the Accept header of the tutorial's multi-platform step.
	acceptBoth = mtOCIManifest + ", " + mtOCIIndex
)

// ---- the registry under test ----

// testRegistry is a running registry plus a recorder of every exchange
// go-containerregistry had with it.
type testRegistry struct {
	*wharftest.Registry
	rec *recorder
}

func start(t *testing.T) *testRegistry {
	t.Helper()
	return &testRegistry{Registry: wharftest.Start(t), rec: &recorder{next: http.DefaultTransport}}
}

// opts are the go-containerregistry options for this registry: requests go
// through the recorder and end with the test.
func (r *testRegistry) opts(t *testing.T, extra ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithTransport(r.rec), remote.WithContext(t.Context())}, extra...)
}

// ref parses "repo:tag" or "repo@digest" on this registry.
func (r *testRegistry) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatalf("parse reference %q: %v", s, err)
	}
	return ref
}

func (r *testRegistry) repo(t *testing.T, s string) name.Repository {
	t.Helper()
	repo, err := name.NewRepository(r.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatalf("parse repository %q: %v", s, err)
	}
	return repo
}

func (r *testRegistry) digestRef(t *testing.T, repo string, d string) name.Digest {
	t.Helper()
	ref, err := name.NewDigest(r.Host+"/"+repo+"@"+d, name.Insecure)
	if err != nil {
		t.Fatalf("parse digest reference %s@%s: %v", repo, d, err)
	}
	return ref
}

// ---- recording transport ----

// exchange is one request a client sent and the answer's status and headers.
type exchange struct {
	Method string
	URL    *url.URL
	Status int
	Header http.Header
}

// recorder is an http.RoundTripper that remembers every exchange. Clients
// upload in parallel, so it locks.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	log  []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	r.mu.Lock()
	r.log = append(r.log, exchange{Method: req.Method, URL: req.URL, Status: resp.StatusCode, Header: resp.Header.Clone()})
	r.mu.Unlock()
	return resp, nil
}

// find returns the recorded exchanges that match.
func (r *recorder) find(match func(exchange) bool) []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []exchange
	for _, e := range r.log {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.log = nil
	r.mu.Unlock()
}

// ---- plain HTTP ----

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request (following redirects, like curl -L) and reads the
// whole answer. headers are "Name: value" pairs, as curl's -H takes them.
func do(t *testing.T, method, rawURL string, body []byte, headers ...string) *response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			t.Fatalf("bad header %q", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, b := testhttp.Do(t, nil, req)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// expectStatus fails the test unless the response has the status.
func expectStatus(t *testing.T, what string, r *response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d; body: %s", what, r.Status, want, r.Body)
	}
}

// expectHeader fails the test unless header k is exactly want.
func expectHeader(t *testing.T, what string, r *response, k, want string) {
	t.Helper()
	if got := r.Header.Get(k); got != want {
		t.Errorf("%s: %s = %q, want %q", what, k, got, want)
	}
}

// expectError fails the test unless the response has the status and an
// OCI error body whose first error has the code. HEAD answers carry no body,
// so for them only the status is checked.
func expectError(t *testing.T, what string, r *response, status int, code string) {
	t.Helper()
	expectStatus(t, what, r, status)
	if len(r.Body) == 0 {
		t.Fatalf("%s: error response has no body, want an OCI error with code %s", what, code)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: error Content-Type %q, want application/json", what, ct)
	}
	e, ok := oci.ParseErrorResponse(r.Body)
	if !ok {
		t.Fatalf("%s: not an OCI error body: %s", what, r.Body)
	}
	if e.Errors[0].Code != oci.Code(code) {
		t.Fatalf("%s: error code %q, want %q; body: %s", what, e.Errors[0].Code, code, r.Body)
	}
}

// decodeJSON unmarshals a response body into v.
func decodeJSON(t *testing.T, what string, r *response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("%s: body is not the expected JSON: %v; body: %s", what, err, r.Body)
	}
}

// ---- tutorial steps ----

// startUpload is the tutorial's
//
//	LOCATION=$(curl -s -o /dev/null -X POST -w '%header{location}' .../blobs/uploads/)
//
// and checks the Location is absolute and can take "&digest=..." appended.
func startUpload(t *testing.T, base, repo string) string {
	t.Helper()
	r := do(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	expectStatus(t, "POST upload", r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() {
		t.Fatalf("POST upload: Location %q is not an absolute URL", loc)
	}
	if !strings.Contains(loc, "?") {
		t.Fatalf("POST upload: Location %q has no query, so the tutorial's \"${LOCATION}&digest=...\" would not be a valid URL", loc)
	}
	if r.Header.Get("Docker-Upload-UUID") == "" {
		t.Errorf("POST upload: no Docker-Upload-UUID header")
	}
	return loc
}

// pushBlob is the tutorial's push_blob: POST, then a monolithic PUT to
// "${location}&digest=${digest}". It returns the digest.
func pushBlob(t *testing.T, base, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	loc := startUpload(t, base, repo)
	r := do(t, http.MethodPut, loc+"&digest="+d.String(), data, "Content-Type: application/octet-stream")
	expectStatus(t, "PUT blob "+d.String(), r, http.StatusCreated)
	expectHeader(t, "PUT blob", r, "Docker-Content-Digest", d.String())
	if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, "/v2/"+repo+"/blobs/"+d.String()) {
		t.Errorf("PUT blob: Location %q does not point at the new blob", loc)
	}
	return d
}

// getBlob fetches a blob, checks it is the expected bytes and returns them.
func getBlob(t *testing.T, base, repo string, d digest.Digest) []byte {
	t.Helper()
	r := do(t, http.MethodGet, base+"/v2/"+repo+"/blobs/"+d.String(), nil)
	expectStatus(t, "GET blob "+d.String(), r, http.StatusOK)
	if got := d.Algorithm().FromBytes(r.Body); got != d {
		t.Fatalf("GET blob %s: body has digest %s", d, got)
	}
	expectHeader(t, "GET blob", r, "Docker-Content-Digest", d.String())
	return r.Body
}

// putManifest pushes a manifest with the given Content-Type and expects 201.
func putManifest(t *testing.T, base, repo, reference, mediaType string, body []byte) *response {
	t.Helper()
	r := do(t, http.MethodPut, base+"/v2/"+repo+"/manifests/"+reference, body, "Content-Type: "+mediaType)
	expectStatus(t, "PUT manifest "+repo+":"+reference, r, http.StatusCreated)
	d := digest.FromBytes(body)
	expectHeader(t, "PUT manifest", r, "Docker-Content-Digest", d.String())
	expectHeader(t, "PUT manifest", r, "Location", base+"/v2/"+repo+"/manifests/"+d.String())
	return r
}

// tagList is the body of GET /v2/<name>/tags/list.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func listTags(t *testing.T, base, repo string) []string {
	t.Helper()
	r := do(t, http.MethodGet, base+"/v2/"+repo+"/tags/list", nil)
	expectStatus(t, "GET tags/list", r, http.StatusOK)
	var tl tagList
	decodeJSON(t, "GET tags/list", r, &tl)
	if tl.Name != repo {
		t.Errorf("tags/list name %q, want %q", tl.Name, repo)
	}
	return tl.Tags
}

// ---- content ----

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// descriptor is an OCI content descriptor as the tests write it.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     *platform         `json:"platform,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// manifest is an OCI image manifest or index, as the tests write and read it.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *descriptor       `json:"config,omitempty"`
	Layers        []descriptor      `json:"layers,omitempty"`
	Manifests     []descriptor      `json:"manifests,omitempty"`
	Subject       *descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func describe(mediaType string, data []byte) descriptor {
	return descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// handImage is an image assembled by hand, as in the tutorial's ~/image/.
type handImage struct {
	Config   []byte
	Layers   [][]byte
	Manifest []byte
}

// newHandImage makes an OCI image of random layers for a platform.
func newHandImage(t *testing.T, arch string, layers int) handImage {
	t.Helper()
	img := handImage{Config: mustJSON(t, map[string]any{
		"architecture": arch,
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{}},
		"config":       map[string]any{"Cmd": []string{"/bin/sh"}},
	})}
	m := manifest{SchemaVersion: 2, MediaType: mtOCIManifest}
	cfg := describe(mtOCIConfig, img.Config)
	m.Config = &cfg
	for i := 0; i < layers; i++ {
		l := randomBytes(t, 1024+i*517)
		img.Layers = append(img.Layers, l)
		m.Layers = append(m.Layers, describe(mtOCILayer, l))
	}
	img.Manifest = mustJSON(t, m)
	return img
}

// push uploads the image's layers and config with push_blob, then PUTs its
// manifest under reference (a tag or its digest).
func (img handImage) push(t *testing.T, base, repo, reference string) digest.Digest {
	t.Helper()
	for _, l := range img.Layers {
		pushBlob(t, base, repo, l)
	}
	pushBlob(t, base, repo, img.Config)
	putManifest(t, base, repo, reference, mtOCIManifest, img.Manifest)
	return digest.FromBytes(img.Manifest)
}

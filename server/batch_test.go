package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/internal/fakeclock"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

func ref(t *testing.T, r *wharftest.Registry, s string) name.Reference {
	t.Helper()
	n, err := name.ParseReference(r.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pushImage(t *testing.T, r *wharftest.Registry, repoTag string, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(1024, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, r, repoTag), img); err != nil {
		t.Fatal(err)
	}
	return img
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return testhttp.Do(t, testhttp.NoRedirects, req)
}

// firstError is the first error of an OCI error body; the test fails
// unless body is one.
func firstError(t *testing.T, body []byte) oci.ErrorInfo {
	t.Helper()
	e, ok := oci.ParseErrorResponse(body)
	if !ok {
		t.Fatalf("not an OCI error body: %q", body)
	}
	return e.Errors[0]
}

func errorCode(t *testing.T, body []byte) oci.Code { t.Helper(); return firstError(t, body).Code }

// errorDetail decodes the detail of an OCI error body's first error into v.
func errorDetail(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(firstError(t, body).Detail, v); err != nil {
		t.Fatalf("error detail of %q: %v", body, err)
	}
}

func TestBatchEndpoint(t *testing.T) {
	clk := fakeclock.New()
	r := wharftest.Start(t, wharftest.Options{Registry: registry.Options{Now: clk.Now}})
	img := pushImage(t, r, "batch/app:v1", 15)
	mf, _ := img.Manifest()
	mdigest, _ := img.Digest()

	resp, body := get(t, r.URL+"/v2/batch/app/manifests/v1/blobs")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var a batch.Response
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if a.ManifestDigest.String() != mdigest.String() {
		t.Errorf("manifestDigest %s, want %s", a.ManifestDigest, mdigest)
	}
	if !strings.HasSuffix(string(must(json.Marshal(a.ExpiresAt))), `Z"`) {
		t.Errorf("expiresAt is not UTC: %s", body)
	}
	now := clk.Now()
	if a.ExpiresAt.Before(now.Add(batch.DefaultExpiry)) || a.ExpiresAt.After(now.Add(batch.DefaultExpiry+5*time.Minute)) {
		t.Errorf("expiresAt %v not in [now+1h, now+1h5m] (now %v)", a.ExpiresAt, now)
	}
	if len(a.Blobs) != 16 {
		t.Fatalf("%d blobs, want 16 (config + 15 layers)", len(a.Blobs))
	}
	want := append([]v1.Descriptor{mf.Config}, mf.Layers...)
	var total int64
	for i, b := range a.Blobs {
		kind := "layer"
		if i == 0 {
			kind = "config"
		}
		if b.Digest.String() != want[i].Digest.String() || b.Size != want[i].Size || b.MediaType != string(want[i].MediaType) || b.Kind != kind {
			t.Errorf("blob %d = %+v, want %s %d %s %s", i, b, want[i].Digest, want[i].Size, want[i].MediaType, kind)
		}
		total += b.Size
		// Every URL downloads with a plain client and no credentials.
		if !strings.HasPrefix(b.DownloadURL, r.URL+"/") {
			t.Fatalf("downloadUrl %q is not an absolute URL of the registry", b.DownloadURL)
		}
		dresp, data := get(t, b.DownloadURL)
		if dresp.StatusCode != 200 || digest.FromBytes(data) != b.Digest {
			t.Fatalf("download of blob %d: status %d, digest %s", i, dresp.StatusCode, digest.FromBytes(data))
		}
	}
	if a.TotalSize != total {
		t.Errorf("totalSize %d, want %d", a.TotalSize, total)
	}

	// The same answer by digest; the cache gives the same URLs and no new signatures.
	_, misses := r.Registry.SignatureCacheStats()
	_, body2 := get(t, r.URL+"/v2/batch/app/manifests/"+mdigest.String()+"/blobs")
	if !bytes.Equal(body, body2) {
		t.Errorf("by-digest answer differs from by-tag answer")
	}
	if _, m2 := r.Registry.SignatureCacheStats(); m2 != misses {
		t.Errorf("repeated call signed %d new URLs, want 0", m2-misses)
	}

	// ETag and Cache-Control.
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	resp3, _ := get(t, r.URL+"/v2/batch/app/manifests/v1/blobs", "If-None-Match", etag)
	if resp3.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", resp3.StatusCode)
	}
	var maxAge int
	if _, err := fmt.Sscanf(resp.Header.Get("Cache-Control"), "private, max-age=%d", &maxAge); err != nil {
		t.Fatalf("Cache-Control %q: %v", resp.Header.Get("Cache-Control"), err)
	}
	if limit := a.ExpiresAt.Sub(now) - batch.DefaultExpiry; time.Duration(maxAge)*time.Second > limit {
		t.Errorf("max-age %ds outlives the guarantee (%v)", maxAge, limit)
	}

	// URLs work until expiresAt and are refused after it, by the route itself.
	u := a.Blobs[1].DownloadURL
	clk.Advance(a.ExpiresAt.Sub(clk.Now()) - time.Second)
	if resp, _ := get(t, u); resp.StatusCode != 200 {
		t.Fatalf("URL a second before expiry: %d", resp.StatusCode)
	}
	clk.Advance(time.Second)
	resp4, body4 := get(t, u)
	if resp4.StatusCode != http.StatusForbidden || errorCode(t, body4) != "DENIED" {
		t.Fatalf("URL at expiry: %d %s, want 403 DENIED", resp4.StatusCode, body4)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestBatchEndpointErrors(t *testing.T) {
	r := wharftest.Start(t)
	pushImage(t, r, "batch/app:v1", 2)
	base := r.URL + "/v2/batch/app/manifests/v1/blobs"

	for _, c := range []struct {
		query  string
		status int
	}{
		{"?expiry=60", 200}, {"?expiry=604800", 200}, {"?expiry=3600", 200}, {"", 200},
		{"?expiry=59", 400}, {"?expiry=604801", 400}, {"?expiry=0", 400}, {"?expiry=-60", 400},
		{"?expiry=abc", 400}, {"?expiry=60.5", 400}, {"?expiry=+60", 400}, {"?expiry=", 400},
		{"?expiry=6e1", 400}, {"?expiry=%2060", 400}, {"?expiry=60&expiry=120", 400},
		{"?expiry=99999999999999999999", 400},
	} {
		resp, body := get(t, base+c.query)
		if resp.StatusCode != c.status {
			t.Errorf("expiry %q: status %d, want %d: %s", c.query, resp.StatusCode, c.status, body)
			continue
		}
		if c.status == 400 && errorCode(t, body) != "EXPIRY_INVALID" {
			t.Errorf("expiry %q: code %s", c.query, errorCode(t, body))
		}
	}

	// The maximum is a maximum: no URL outlives expiry=604800 (the server
	// signs on its own clock; Date is whole seconds, so allow one).
	resp, body := get(t, base+"?expiry=604800")
	var a batch.Response
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range a.Blobs {
		u, err := url.Parse(b.DownloadURL)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := strconv.ParseInt(u.Query().Get("expires"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if life := time.Unix(exp, 0).Sub(date); life > batch.MaxExpiry+time.Second {
			t.Errorf("expiry=604800: %s lives %v, past the maximum", b.Digest, life)
		}
	}
	if life := a.ExpiresAt.Sub(date); life > batch.MaxExpiry+time.Second {
		t.Errorf("expiry=604800: expiresAt is %v from Date", life)
	}

	// Unknown repository, unknown tag, unknown digest: byte-identical 404s.
	var bodies [][]byte
	for _, p := range []string{
		"/v2/no/such/repo/manifests/v1/blobs",
		"/v2/batch/app/manifests/v2/blobs",
		"/v2/batch/app/manifests/" + digest.FromString("x").String() + "/blobs",
		"/v2/batch/app/manifests/sha256:bad/blobs",
	} {
		resp, body := get(t, r.URL+p)
		if resp.StatusCode != 404 {
			t.Fatalf("%s: status %d, want 404", p, resp.StatusCode)
		}
		bodies = append(bodies, body)
	}
	for i := 1; i < len(bodies); i++ {
		if !bytes.Equal(bodies[0], bodies[i]) {
			t.Errorf("404 bodies differ:\n%s\n%s", bodies[0], bodies[i])
		}
	}
}

func TestBatchEndpointIndex(t *testing.T) {
	r := wharftest.Start(t)
	amd, _ := random.Image(512, 2)
	arm, _ := random.Image(512, 3)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	if err := remote.WriteIndex(ref(t, r, "multi/app:latest"), idx); err != nil {
		t.Fatal(err)
	}
	base := r.URL + "/v2/multi/app/manifests/latest/blobs"
	resp, body := get(t, base)
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("index: status %d, want 415: %s", resp.StatusCode, body)
	}
	var d struct {
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if errorDetail(t, body, &d); len(d.Manifests) != 2 {
		t.Fatalf("415 body does not list the children: %s", body)
	}
	if p := d.Manifests[1].Platform; p == nil || p.Architecture != "arm64" {
		t.Errorf("child platform missing from 415 body: %s", body)
	}
	armDigest, _ := arm.Digest()
	for _, c := range []struct {
		platform string
		status   int
		digest   string
	}{
		{"linux/arm64", 200, armDigest.String()},
		{"linux/arm64/v8", 200, armDigest.String()},
		{"linux/arm64/v7", 404, ""},
		{"windows/amd64", 404, ""},
		{"linux", 400, ""},
		{"linux/amd64/v1/x", 400, ""},
	} {
		resp, body := get(t, base+"?platform="+c.platform)
		if resp.StatusCode != c.status {
			t.Errorf("platform %s: status %d, want %d: %s", c.platform, resp.StatusCode, c.status, body)
			continue
		}
		if c.digest != "" {
			var a batch.Response
			_ = json.Unmarshal(body, &a)
			if a.ManifestDigest.String() != c.digest || len(a.Blobs) != 4 {
				t.Errorf("platform %s: manifest %s with %d blobs, want %s with 4", c.platform, a.ManifestDigest, len(a.Blobs), c.digest)
			}
		}
	}
}

type failingSigner struct{}

func (failingSigner) SignBlob(context.Context, registry.BlobInfo, time.Time) (registry.SignedURL, error) {
	return registry.SignedURL{}, errors.New("HSM unplugged")
}

func TestBatchEndpointSigningFailure(t *testing.T) {
	r := wharftest.Start(t, wharftest.Options{Registry: registry.Options{Signer: failingSigner{}}})
	pushImage(t, r, "batch/app:v1", 1)
	resp, body := get(t, r.URL+"/v2/batch/app/manifests/v1/blobs")
	if resp.StatusCode != 500 || errorCode(t, body) != "UNKNOWN" || strings.Contains(string(body), "HSM") {
		t.Fatalf("signing failure: %d %s; want 500 UNKNOWN without internals", resp.StatusCode, body)
	}
}

func TestRedirects(t *testing.T) {
	r := wharftest.Start(t, wharftest.Options{Redirect: true})
	img := pushImage(t, r, "redir/app:v1", 3)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	blobURL := r.URL + "/v2/redir/app/blobs/" + d.String()

	resp, _ := get(t, blobURL)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("blob GET with redirects on: %d, want 307", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, r.URL+"/_wharf/blobs/"+d.String()+"?") {
		t.Fatalf("Location %q", loc)
	}
	req, _ := http.NewRequest("HEAD", blobURL, nil)
	hresp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	hresp.Body.Close()
	if hresp.StatusCode != 200 {
		t.Fatalf("HEAD with redirects on: %d, want 200 (HEAD never redirects)", hresp.StatusCode)
	}

	// Range on the signed route.
	rresp, part := get(t, loc, "Range", "bytes=10-19")
	full, _ := layers[0].Compressed()
	all, _ := io.ReadAll(full)
	if rresp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, all[10:20]) {
		t.Fatalf("Range on the signed route: %d, %d bytes", rresp.StatusCode, len(part))
	}

	// Tampering: another digest in the path, a changed signature.
	other, _ := layers[1].Digest()
	for _, bad := range []string{
		strings.Replace(loc, d.String(), other.String(), 1),
		strings.Replace(loc, "sig=", "sig=x", 1),
		strings.Split(loc, "?")[0],
	} {
		resp, body := get(t, bad)
		if resp.StatusCode != http.StatusForbidden || errorCode(t, body) != "DENIED" {
			t.Errorf("tampered URL %s: %d %s, want 403 DENIED", bad, resp.StatusCode, body)
		}
	}

	// A whole pull with go-containerregistry through the redirects.
	pulled, err := remote.Image(ref(t, r, "redir/app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	pls, _ := pulled.Layers()
	for i, l := range pls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatalf("layer %d through redirect: %v", i, err)
		}
		rc.Close()
		want, _ := l.Digest()
		if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != want.String() {
			t.Fatalf("layer %d: digest %s, want %s", i, got, want)
		}
	}
}

// TestBatchEndpointManifestKinds: OCI manifests and artifacts (an empty
// config and an artifactType) work like Docker schema2 images.
func TestBatchEndpointManifestKinds(t *testing.T) {
	r := wharftest.Start(t)
	img, _ := random.Image(256, 2)
	oci := mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	if err := remote.Write(ref(t, r, "kinds/oci:v1"), oci); err != nil {
		t.Fatal(err)
	}
	// An artifact: the empty config and one blob.
	blob := []byte("sbom contents")
	empty := []byte("{}")
	for _, b := range [][]byte{blob, empty} {
		d := digest.FromBytes(b)
		resp, err := http.Post(r.URL+"/v2/kinds/artifact/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(b))
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("push blob: %v %v", resp.StatusCode, err)
		}
		resp.Body.Close()
	}
	art := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},`+
		`"layers":[{"mediaType":"application/spdx+json","digest":"%s","size":%d}]}`, digest.FromBytes(empty), digest.FromBytes(blob), len(blob))
	req, _ := http.NewRequest("PUT", r.URL+"/v2/kinds/artifact/manifests/sbom", strings.NewReader(art))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("push artifact: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	for _, c := range []struct {
		path      string
		n         int
		layerType string
	}{
		{"/v2/kinds/oci/manifests/v1/blobs", 3, "application/vnd.docker.image.rootfs.diff.tar.gzip"}, // ggcr keeps random layers' type
		{"/v2/kinds/artifact/manifests/sbom/blobs", 2, "application/spdx+json"},
	} {
		resp, body := get(t, r.URL+c.path)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.path, resp.StatusCode, body)
		}
		var a batch.Response
		_ = json.Unmarshal(body, &a)
		if len(a.Blobs) != c.n || a.Blobs[0].Kind != "config" || a.Blobs[1].MediaType != c.layerType {
			t.Errorf("%s: %s", c.path, body)
		}
		for _, b := range a.Blobs {
			dresp, data := get(t, b.DownloadURL)
			if dresp.StatusCode != 200 || digest.FromBytes(data) != b.Digest {
				t.Errorf("%s: blob %s did not download intact", c.path, b.Digest)
			}
		}
	}
}

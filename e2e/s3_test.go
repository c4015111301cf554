package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/registry"
)

// startS3 runs a registry whose blobs live in a fresh MinIO; presign
// makes the S3 store the signer (otherwise the local signer, whose
// download route streams from the bucket); meta, when set, wraps the
// metadata store (wharftest.Options.Meta).
func startS3(t *testing.T, presign bool, meta func(registry.MetadataStore) registry.MetadataStore) (*testRegistry, *s3.Store, *miniotest.Server) {
	t.Helper()
	return startS3On(t, miniotest.MinIO, presign, meta)
}

// startS3On is startS3 on a server of kind.
func startS3On(t *testing.T, kind miniotest.Kind, presign bool, meta func(registry.MetadataStore) registry.MetadataStore) (*testRegistry, *s3.Store, *miniotest.Server) {
	t.Helper()
	m := miniotest.StartKind(t, kind)
	st, err := s3.New(context.Background(), s3.Options{
		Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: "wharf/",
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: s3.MinPartSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := wharftest.Options{Blobs: st, Redirect: true, Meta: meta}
	if presign {
		o.Registry.Signer = st
	}
	return &testRegistry{Registry: wharftest.Start(t, o), rec: &recorder{next: http.DefaultTransport}}, st, m
}

// eachS3 runs f as a subtest for every kind of S3 server.
func eachS3(t *testing.T, f func(t *testing.T, kind miniotest.Kind)) {
	for _, k := range miniotest.Kinds {
		t.Run(string(k), func(t *testing.T) { f(t, k) })
	}
}

// TestS3RedirectPullGGCR: go-containerregistry pushes an image into the
// S3 store and pulls it back through 307s straight from the S3 server.
func TestS3RedirectPullGGCR(t *testing.T) { eachS3(t, testS3RedirectPullGGCR) }

func testS3RedirectPullGGCR(t *testing.T, kind miniotest.Kind) {
	reg, _, m := startS3On(t, kind, true, nil)
	img, err := random.Image(6<<20+1234, 3) // layers span more than one part
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	ref := reg.ref(t, "s3/redirect:v1")
	if err := remote.Write(ref, img, reg.opts(t)...); err != nil {
		t.Fatal(err)
	}
	reg.rec.reset()
	pulled, err := remote.Image(ref, reg.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Layers()
	for i, l := range layers {
		got := sha256.Sum256(layerBytes(t, l)) // ggcr also verifies the digest
		if "sha256:"+hex.EncodeToString(got[:]) != mustDigest(t, want[i]).String() {
			t.Fatalf("layer %d differs", i)
		}
	}
	if _, err := pulled.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	s3Host := strings.TrimPrefix(m.Endpoint, "http://")
	redirects := reg.rec.find(func(e exchange) bool {
		return e.Method == http.MethodGet && strings.Contains(e.URL.Path, "/blobs/sha256:") && e.Status == http.StatusTemporaryRedirect
	})
	fromS3 := reg.rec.find(func(e exchange) bool {
		return e.URL.Host == s3Host && e.Status == http.StatusOK && e.URL.Query().Get("X-Amz-Signature") != ""
	})
	if len(redirects) != 4 || len(fromS3) != 4 {
		t.Fatalf("want 4 blob GETs answered 307 and 4 pre-signed downloads from the S3 server; got %d and %d", len(redirects), len(fromS3))
	}
	for _, e := range redirects {
		if loc, _ := url.Parse(e.Header.Get("Location")); loc == nil || loc.Host != s3Host {
			t.Fatalf("redirect to %q, not the S3 server", e.Header.Get("Location"))
		}
	}
}

// TestS3BatchEndpointDownloads: every downloadUrl of the batch endpoint
// downloads its blob from the S3 server with a plain client and no credentials.
func TestS3BatchEndpointDownloads(t *testing.T) { eachS3(t, testS3BatchEndpointDownloads) }

func testS3BatchEndpointDownloads(t *testing.T, kind miniotest.Kind) {
	reg, _, m := startS3On(t, kind, true, nil)
	img := randomImage(t, 4, true)
	if err := remote.Write(reg.ref(t, "s3/batch:v1"), img, reg.opts(t)...); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	r := do(t, http.MethodGet, reg.URL+"/v2/s3/batch/manifests/v1/blobs?expiry=600", nil)
	expectStatus(t, "batch", r, http.StatusOK)
	var a struct {
		ExpiresAt time.Time `json:"expiresAt"`
		Blobs     []struct {
			Digest      string `json:"digest"`
			Size        int64  `json:"size"`
			DownloadURL string `json:"downloadUrl"`
		} `json:"blobs"`
	}
	decodeJSON(t, "batch", r, &a)
	if len(a.Blobs) != 5 {
		t.Fatalf("%d blobs, want 5", len(a.Blobs))
	}
	// The S3 signer signs whole seconds and keeps one in hand (its URLs may
	// end up to 2 s before the time asked, never after): a request just
	// before a minute boundary, where the bucket rounds up least, gets 598 s.
	if a.ExpiresAt.Before(before.Add(598*time.Second)) || a.ExpiresAt.After(before.Add(700*time.Second)) {
		t.Fatalf("expiresAt %v", a.ExpiresAt)
	}
	plain := &http.Client{Timeout: 30 * time.Second}
	for _, b := range a.Blobs {
		if !strings.HasPrefix(b.DownloadURL, m.Endpoint+"/") {
			t.Fatalf("downloadUrl %s is not the S3 server's", b.DownloadURL)
		}
		resp, body := testhttp.Get(t, plain, b.DownloadURL)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", b.DownloadURL, resp.StatusCode)
		}
		sum := sha256.Sum256(body)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != b.Digest || int64(len(body)) != b.Size {
			t.Fatalf("downloaded %s (%d bytes), want %s (%d)", got, len(body), b.Digest, b.Size)
		}
		// The URL's own expiry is no earlier than expiresAt.
		u, _ := url.Parse(b.DownloadURL)
		signed, _ := time.Parse("20060102T150405Z", u.Query().Get("X-Amz-Date"))
		var secs int
		fmt.Sscan(u.Query().Get("X-Amz-Expires"), &secs)
		if signed.Add(time.Duration(secs) * time.Second).Before(a.ExpiresAt) {
			t.Fatalf("URL expires before expiresAt %v: %s", a.ExpiresAt, b.DownloadURL)
		}
	}
}

// TestS3LocalSignerStreamsFromBucket: with the local signer the redirect
// goes to the registry's own download route, which streams (and serves
// ranges) from the bucket.
func TestS3LocalSignerStreamsFromBucket(t *testing.T) { eachS3(t, testS3LocalSignerStreamsFromBucket) }

func testS3LocalSignerStreamsFromBucket(t *testing.T, kind miniotest.Kind) {
	reg, _, _ := startS3On(t, kind, false, nil)
	data := randomBytes(t, 300000)
	d := pushBlob(t, reg.URL, "s3/local", data)
	if got := getBlob(t, reg.URL, "s3/local", d); !bytes.Equal(got, data) {
		t.Fatal("blob differs")
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(reg.URL + "/v2/s3/local/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "/_wharf/blobs/") {
		t.Fatalf("%d %s", resp.StatusCode, loc)
	}
	if !strings.HasPrefix(loc, "http") {
		loc = reg.URL + loc
	}
	r := do(t, http.MethodGet, loc, nil, "Range: bytes=1000-1999")
	expectStatus(t, "range from bucket", r, http.StatusPartialContent)
	if !bytes.Equal(r.Body, data[1000:2000]) {
		t.Fatal("range differs")
	}
}

// TestS3ExpiredUploadIsAborted: an abandoned session (one part and a tail
// in the bucket) is aborted by ExpireUploads: no multipart upload and no
// tail objects remain.
func TestS3ExpiredUploadIsAborted(t *testing.T) { eachS3(t, testS3ExpiredUploadIsAborted) }

func testS3ExpiredUploadIsAborted(t *testing.T, kind miniotest.Kind) {
	reg, st, m := startS3On(t, kind, true, nil)
	loc := startUpload(t, reg.URL, "s3/abandoned")
	r := do(t, http.MethodPatch, loc, randomBytes(t, 6<<20), "Content-Type: application/octet-stream")
	expectStatus(t, "patch", r, http.StatusAccepted)
	u, _ := url.Parse(loc)
	id := u.Path[strings.LastIndex(u.Path, "/")+1:]
	c := m.Client()
	key := st.BlobKey(id)
	mpus := func() int {
		out, err := c.ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: &m.Bucket, Prefix: &key})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads)
	}
	objects := func() int { return len(m.Keys(t, "wharf/uploads/")) }
	if mpus() != 1 || objects() == 0 {
		t.Fatalf("before expiry: %d multipart uploads, %d tail objects", mpus(), objects())
	}
	n, err := reg.Registry.Registry.ExpireUploads(t.Context(), -time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("ExpireUploads = %d, %v", n, err)
	}
	if mpus() != 0 || objects() != 0 {
		t.Fatalf("after expiry: %d multipart uploads, %d tail objects", mpus(), objects())
	}
}

var _ registry.Signer = (*s3.Store)(nil)

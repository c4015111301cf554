package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
)

// distinctLayers is a manifest of config and n layers of distinct digests
// that no repository holds.
func distinctLayers(t *testing.T, config digest.Digest, configSize, n int) []byte {
	t.Helper()
	ls := make([]digest.Digest, n)
	for i := range ls {
		ls[i] = digest.FromString(fmt.Sprint("missing layer ", i))
	}
	return manifestJSON(t, config, configSize, ls...)
}

// TestManifestReferenceLimit: a manifest over the reference limit is
// refused before its references are looked up, and the answer about
// missing references lists a bounded number of them.
func TestManifestReferenceLimit(t *testing.T) {
	f := newFixture(t)
	ct := map[string]string{"Content-Type": oci.MediaTypeOCIManifest}
	before := f.state()

	// 10,000 layers and a config: one over the default limit.
	m := distinctLayers(t, f.config, len(f.configBody), registry.DefaultMaxManifestReferences)
	resp, body := f.do(request{method: "PUT", path: "/v2/" + repo + "/manifests/many", header: ct, body: m})
	wantError(t, "PUT", resp, body, http.StatusBadRequest, oci.CodeManifestInvalid)
	var d map[string]any
	if errorDetail(t, body, &d); d["limit"] != float64(registry.DefaultMaxManifestReferences) {
		t.Fatalf("detail %v, want the limit", d)
	}

	// 2,000 missing layers: the error names the first, lists a few and
	// counts them all.
	m = distinctLayers(t, f.config, len(f.configBody), 2000)
	resp, body = f.do(request{method: "PUT", path: "/v2/" + repo + "/manifests/many", header: ct, body: m})
	wantError(t, "PUT", resp, body, http.StatusBadRequest, oci.CodeManifestBlobUnknown)
	if len(body) > 2048 {
		t.Fatalf("error body of %d bytes for 2,000 missing layers", len(body))
	}
	d = nil
	errorDetail(t, body, &d)
	if d["missingCount"] != float64(2000) || len(d["missing"].([]any)) != 10 || d["digest"] != digest.FromString("missing layer 0").String() {
		t.Fatalf("detail %v", d)
	}
	f.wantUnchanged(before)

	// The limit is configurable: 3 references pass, 4 do not.
	g := newFixture(t, wharftest.Options{Registry: registry.Options{MaxManifestReferences: 3}})
	second := g.pushBlob(repo, []byte("second layer"))
	ok := manifestJSON(t, g.config, len(g.configBody), g.layer, second)
	g.mustStatus(request{method: "PUT", path: "/v2/" + repo + "/manifests/three", header: ct, body: ok}, http.StatusCreated)
	over := manifestJSON(t, g.config, len(g.configBody), g.layer, second, g.layer)
	resp, body = g.do(request{method: "PUT", path: "/v2/" + repo + "/manifests/four", header: ct, body: over})
	wantError(t, "PUT", resp, body, http.StatusBadRequest, oci.CodeManifestInvalid)
}

// TestUnparsableQuery: a query Go cannot parse (it would drop every
// parameter) is refused with 400, on every route, instead of being served
// as if the parameters were absent.
func TestUnparsableQuery(t *testing.T) {
	f := newFixture(t)
	before := f.state()
	many := strings.Repeat("x=1&", 10000) + "n=1"
	for _, path := range []string{
		"/v2/" + repo + "/tags/list?" + many,
		"/v2/_catalog?" + many,
		"/v2/" + repo + "/tags/list?n=1;last=a",
		"/v2/" + repo + "/tags/list?n=%zz",
		"/v2/" + repo + "/manifests/v1/blobs?" + many,
		"/v2/" + repo + "/blobs/uploads/?digest=" + f.layer.String() + "&" + many,
		"/_wharf/blobs/" + f.layer.String() + "?" + many,
	} {
		t.Run(path[:min(len(path), 60)], func(t *testing.T) {
			f.env.t = t
			resp, body := f.do(request{method: "GET", path: path})
			if strings.Contains(path, "uploads") {
				resp, body = f.do(request{method: "POST", path: path, body: []byte("layer")})
			}
			wantError(t, "GET", resp, body, http.StatusBadRequest, oci.CodeUnsupported)
		})
	}
	f.env.t = t

	// 10,001 tags on a PUT by digest: refused, not 201 with no tag.
	ct := map[string]string{"Content-Type": oci.MediaTypeOCIManifest}
	path := "/v2/" + repo + "/manifests/" + f.manifestDigest.String() + "?" + strings.Repeat("tag=t&", 10000) + "tag=t"
	resp, body := f.do(request{method: "PUT", path: path, header: ct, body: f.manifest})
	wantError(t, "PUT", resp, body, http.StatusBadRequest, oci.CodeUnsupported)
	f.wantUnchanged(before)
}

// TestTagParamsLimit: a manifest PUT takes at most server.MaxTagParams
// tag parameters.
func TestTagParamsLimit(t *testing.T) {
	f := newFixture(t)
	ct := map[string]string{"Content-Type": oci.MediaTypeOCIManifest}
	tags := func(n int) string {
		q := url.Values{}
		for i := range n {
			q.Add("tag", fmt.Sprint("t", i))
		}
		return q.Encode()
	}
	before := f.state()
	path := "/v2/" + repo + "/manifests/" + f.manifestDigest.String() + "?"
	resp, body := f.do(request{method: "PUT", path: path + tags(server.MaxTagParams+1), header: ct, body: f.manifest})
	wantError(t, "PUT", resp, body, http.StatusBadRequest, oci.CodeTagInvalid)
	f.wantUnchanged(before)

	resp = f.mustStatus(request{method: "PUT", path: path + tags(server.MaxTagParams), header: ct, body: f.manifest}, http.StatusCreated)
	if n := len(resp.Header.Values("OCI-Tag")); n != server.MaxTagParams {
		t.Fatalf("%d OCI-Tag headers, want %d", n, server.MaxTagParams)
	}
}

// halfClosed sends head and part of a body on a raw connection, then,
// unless stall, closes its sending side (a client whose body ends early),
// and reads the answer; nil if none came.
func halfClosed(t *testing.T, host, head string, partial []byte, stall bool) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(partial); err != nil {
		t.Fatal(err)
	}
	if !stall {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil // the server could not answer (its write deadline passed)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

// TestBrokenUploadBody: an upload body that ends early or stalls is the
// client's error (400, 408 for a stall), logged at info, not an internal
// error.
func TestBrokenUploadBody(t *testing.T) {
	logs := &wharftest.LogBuffer{}
	e := newEnv(t, wharftest.Options{Server: func(o *server.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.IdleTimeout = 300 * time.Millisecond
		o.RequestTimeout = 300 * time.Millisecond
	}})
	content := []byte(strings.Repeat("0123456789", 100))
	d := digest.FromBytes(content)
	for _, tc := range []struct {
		name   string
		stall  bool
		status int
	}{
		{"ends early", false, http.StatusBadRequest},
		{"stalls", true, http.StatusRequestTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			loc, _ := e.startUpload(repo)
			for _, head := range []string{
				"PATCH " + loc + " HTTP/1.1\r\nContent-Range: 0-999\r\n",
				"PUT " + loc + "&digest=" + d.String() + " HTTP/1.1\r\n",
				"POST /v2/" + repo + "/blobs/uploads/?digest=" + d.String() + " HTTP/1.1\r\n",
			} {
				head += "Host: " + e.r.Host + "\r\nContent-Length: 1000\r\n\r\n"
				resp, body := halfClosed(t, e.r.Host, head, content[:10], tc.stall)
				if resp == nil {
					t.Fatalf("%s: no answer", head)
				}
				wantError(t, "PATCH", resp, body, tc.status, oci.CodeBlobUploadInvalid)
			}
		})
	}
	e.t = t
	// A manifest body that stalls past http.request_timeout is the
	// client's error too (the write deadline has passed with the read
	// one, so no answer can be sent).
	head := "PUT /v2/" + repo + "/manifests/stalled HTTP/1.1\r\nHost: " + e.r.Host + "\r\nContent-Type: " + oci.MediaTypeOCIManifest + "\r\nContent-Length: 1000\r\n\r\n"
	if resp, body := halfClosed(t, e.r.Host, head, []byte("{"), true); resp != nil {
		wantError(t, "PUT", resp, body, http.StatusRequestTimeout, oci.CodeManifestInvalid)
	}
	if !strings.Contains(logs.String(), "route=/v2/{name}/manifests/{reference} repo="+repo+" status=408") {
		t.Fatalf("a stalled manifest PUT was not logged as 408:\n%s", logs.String())
	}

	if l := logs.String(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "internal error") {
		t.Fatalf("a client's broken body was logged as a server error:\n%s", l)
	}
	if st := e.blobHead(repo, d); st != http.StatusNotFound {
		t.Fatalf("blob from broken bodies: HEAD %d", st)
	}
}

// TestUploadBodyOverLimit: a chunked upload body that grows past
// limits.upload_body_max_bytes is 413 SIZE_INVALID, not an internal error.
func TestUploadBodyOverLimit(t *testing.T) {
	e := newEnv(t, wharftest.Options{Server: func(o *server.Options) { o.MaxUploadBody = 100 }})
	loc, _ := e.startUpload(repo)
	resp, body := e.do(request{method: "PATCH", path: loc, body: make([]byte, 1000), chunked: true})
	wantError(t, "PATCH", resp, body, http.StatusRequestEntityTooLarge, oci.CodeSizeInvalid)
}

// TestCatalogDefaultPage: a catalog request without n reads and answers
// one bounded page, with a Link to the rest; so does one with a larger n.
func TestCatalogDefaultPage(t *testing.T) {
	e := newEnv(t)
	d := e.pushBlob("cat/r0000", []byte("shared"))
	ctx := context.Background()
	const repos = 1001
	for i := 1; i < repos; i++ {
		if ok, err := e.r.Registry.MountBlob(ctx, fmt.Sprintf("cat/r%04d", i), d, "cat/r0000", func(string) bool { return true }); !ok || err != nil {
			t.Fatalf("mount: %v %v", ok, err)
		}
	}
	var page struct {
		Repositories []string `json:"repositories"`
	}
	for _, path := range []string{"/v2/_catalog", "/v2/_catalog?n=5000"} {
		resp, body := e.do(request{method: "GET", path: path})
		if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if len(page.Repositories) != 1000 || resp.Header.Get("Link") != `</v2/_catalog?last=cat%2Fr0999&n=1000>; rel="next"` {
			t.Fatalf("%s: %d repositories, Link %q; want 1000 and a Link to the rest", path, len(page.Repositories), resp.Header.Get("Link"))
		}
	}
	resp, body := e.do(request{method: "GET", path: "/v2/_catalog?last=cat%2Fr0999&n=1000"})
	if err := json.Unmarshal(body, &page); err != nil || len(page.Repositories) != 1 || page.Repositories[0] != "cat/r1000" || resp.Header.Get("Link") != "" {
		t.Fatalf("second page: %s, Link %q", body, resp.Header.Get("Link"))
	}
}

// TestRangeEdges: a Range that overlaps nothing, is empty, reversed or
// asks for several ranges is 416 RANGE_INVALID with Content-Range
// "bytes */<size>", on the blob route and on signed URLs.
func TestRangeEdges(t *testing.T) {
	f := newFixture(t)
	content := bytes.Repeat([]byte("0123456789"), 1024)
	d := f.pushBlob(repo, content)
	var answer batch.Response
	f.mustStatus(request{method: "PUT", path: "/v2/" + repo + "/manifests/ranges", header: map[string]string{"Content-Type": oci.MediaTypeOCIManifest},
		body: manifestJSON(t, f.config, len(f.configBody), d)}, http.StatusCreated)
	_, body := f.do(request{method: "GET", path: "/v2/" + repo + "/manifests/ranges/blobs"})
	if err := json.Unmarshal(body, &answer); err != nil || len(answer.Blobs) != 2 {
		t.Fatalf("batch: %s", body)
	}
	signed := strings.TrimPrefix(answer.Blobs[1].DownloadURL, f.r.URL)
	for _, path := range []string{"/v2/" + repo + "/blobs/" + d.String(), signed} {
		for _, tc := range []struct {
			rng, ifRange string
			status       int
			contentRange string
		}{
			{"bytes=-0", "", 416, "bytes */10240"},
			{"bytes=5-3", "", 416, "bytes */10240"},
			{"bytes=10240-", "", 416, "bytes */10240"},
			{"bytes=10240-10240", "", 416, "bytes */10240"},
			{"bytes=0-1,5-6", "", 416, "bytes */10240"},
			{"bytes=0-0,0-0", "", 416, "bytes */10240"},
			{"bytes=+1-2", "", 416, "bytes */10240"},
			{"bytes=-1", "", 206, "bytes 10239-10239/10240"},
			{"bytes=10239-", "", 206, "bytes 10239-10239/10240"},
			{"bytes=0-99999", "", 206, "bytes 0-10239/10240"},
			{"bytes=-99999", "", 206, "bytes 0-10239/10240"},
			{"bytes=-0", `"sha256:other"`, 200, ""},
			{"bytes=-0", `"` + d.String() + `"`, 416, "bytes */10240"},
		} {
			hdr := map[string]string{"Range": tc.rng}
			if tc.ifRange != "" {
				hdr["If-Range"] = tc.ifRange
			}
			resp, body := f.do(request{method: "GET", path: path, header: hdr})
			if tc.status == 416 {
				wantError(t, "GET", resp, body, 416, oci.CodeRangeInvalid)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
				t.Errorf("%s Range %q If-Range %q: %d Content-Range %q, want %d %q", path[:20], tc.rng, tc.ifRange,
					resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contentRange)
			}
		}
	}
}

// TestBatchNestedIndex: when platform picks a child that is itself an
// index, the batch endpoint answers 415 listing that index's children
// (and naming it), not 200 with no blobs.
func TestBatchNestedIndex(t *testing.T) {
	f := newFixture(t)
	index := func(mediaType string, d digest.Digest, size int) []byte {
		b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex, "manifests": []any{
			map[string]any{"mediaType": mediaType, "digest": d, "size": size, "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
		}})
		return b
	}
	ct := map[string]string{"Content-Type": oci.MediaTypeOCIIndex}
	inner := index(oci.MediaTypeOCIManifest, f.manifestDigest, len(f.manifest))
	f.mustStatus(request{method: "PUT", path: "/v2/" + repo + "/manifests/inner", header: ct, body: inner}, http.StatusCreated)
	outer := index(oci.MediaTypeOCIIndex, digest.FromBytes(inner), len(inner))
	f.mustStatus(request{method: "PUT", path: "/v2/" + repo + "/manifests/outer", header: ct, body: outer}, http.StatusCreated)

	f.mustStatus(request{method: "GET", path: "/v2/" + repo + "/manifests/inner/blobs?platform=linux/amd64"}, http.StatusOK)
	resp, body := f.do(request{method: "GET", path: "/v2/" + repo + "/manifests/outer/blobs?platform=linux/amd64"})
	wantError(t, "GET", resp, body, http.StatusUnsupportedMediaType, oci.CodeUnsupported)
	var d struct {
		Digest    digest.Digest    `json:"digest"`
		Manifests []oci.Descriptor `json:"manifests"`
	}
	if errorDetail(t, body, &d); d.Digest != digest.FromBytes(inner) || len(d.Manifests) != 1 || d.Manifests[0].Digest != f.manifestDigest {
		t.Fatalf("415 detail %+v, want the nested index and its child", d)
	}
}

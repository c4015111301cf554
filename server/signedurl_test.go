package server_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/server"
	"github.com/wharf-registry/wharf/signer"
)

// TestPublicURL: behind a proxy or load balancer the signed URLs of
// redirects and of the batch endpoint start with the configured public
// URL, not with whatever host or scheme the request came in on.
func TestPublicURL(t *testing.T) {
	const public = "https://registry.example.com"
	// Pushed directly (upload Locations would point at the public URL,
	// which does not resolve here), then served with the public URL set.
	direct := wharftest.Start(t)
	img := pushImage(t, direct, "pub/app:v1", 2)
	r := wharftest.Start(t, wharftest.Options{Dir: direct.Dir, Redirect: true, Server: func(o *server.Options) { o.PublicURL = public + "/" }})
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	req, _ := http.NewRequest("GET", r.URL+"/v2/pub/app/blobs/"+d.String(), nil)
	req.Host = "internal-lb:8080" // what a proxy may pass on
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, public+signer.DownloadPath+d.String()+"?") {
		t.Fatalf("redirect: %d Location %q, want %s%s...", resp.StatusCode, loc, public, signer.DownloadPath)
	}
	resp, body := get(t, r.URL+"/v2/pub/app/manifests/v1/blobs")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"downloadUrl":"`+public+signer.DownloadPath) || strings.Contains(string(body), r.Host) {
		t.Fatalf("batch URLs do not use the public URL: %s", body)
	}
}

// TestTamperedExpiryRefused: a signed URL whose expiry was pushed later is
// refused over HTTP (the expiry is bound into the signature), as is one
// whose key id was swapped.
func TestTamperedExpiryRefused(t *testing.T) {
	r, d := redirectingWithLayer(t, "tamper/app:v1", 1)
	resp, _ := get(t, r.URL+"/v2/tamper/app/blobs/"+d.String())
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("redirect: %d %v", resp.StatusCode, err)
	}
	if resp, _ := get(t, loc.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("untouched URL: %d", resp.StatusCode)
	}
	exp, _ := strconv.ParseInt(loc.Query().Get(signer.ParamExpires), 10, 64)
	for name, edit := range map[string]func(q url.Values){
		"expiry pushed later":  func(q url.Values) { q.Set(signer.ParamExpires, strconv.FormatInt(exp+3600, 10)) },
		"expiry moved earlier": func(q url.Values) { q.Set(signer.ParamExpires, strconv.FormatInt(exp-1, 10)) },
		"another key id":       func(q url.Values) { q.Set(signer.ParamKeyID, "someone-else") },
		"no expiry":            func(q url.Values) { q.Del(signer.ParamExpires) },
	} {
		u := *loc
		q := u.Query()
		edit(q)
		u.RawQuery = q.Encode()
		resp, body := get(t, u.String())
		if resp.StatusCode != http.StatusForbidden || errorCode(t, body) != "DENIED" {
			t.Errorf("%s: %d %s, want 403 DENIED", name, resp.StatusCode, body)
		}
	}
}

// TestBatchEndpointDockerManifestList: a Docker manifest list is an index
// too: 415 listing its children, like an OCI index.
func TestBatchEndpointDockerManifestList(t *testing.T) {
	r := wharftest.Start(t)
	a, _ := random.Image(256, 1)
	b, _ := random.Image(256, 1)
	list := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: a, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: b, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	if err := remote.WriteIndex(ref(t, r, "dlist/app:latest"), list); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, r.URL+"/v2/dlist/app/manifests/latest/blobs")
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(body), `"manifests"`) || !strings.Contains(string(body), "arm64") {
		t.Fatalf("manifest list: %d %s, want 415 listing the children", resp.StatusCode, body)
	}
	bd, _ := b.Digest()
	resp, body = get(t, r.URL+"/v2/dlist/app/manifests/latest/blobs?platform=linux/arm64")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"manifestDigest":"`+bd.String()+`"`) {
		t.Fatalf("platform=linux/arm64: %d %s", resp.StatusCode, body)
	}
}

// TestBatchEndpointInvalidNameIs404: the batch endpoint answers a name
// that cannot exist with the same 404, byte for byte, as a repository or
// reference that does not (the proposal's one 404 for "not found").
func TestBatchEndpointInvalidNameIs404(t *testing.T) {
	r := wharftest.Start(t)
	pushImage(t, r, "real/app:v1", 1)
	want, wantBody := get(t, r.URL+"/v2/no/such/manifests/v1/blobs")
	if want.StatusCode != http.StatusNotFound {
		t.Fatalf("missing repository: %d", want.StatusCode)
	}
	for _, path := range []string{"/v2/UPPER/case/manifests/v1/blobs", "/v2/a..b/manifests/v1/blobs", "/v2/real/app/manifests/-bad-/blobs"} {
		resp, body := get(t, r.URL+path)
		if resp.StatusCode != http.StatusNotFound || string(body) != string(wantBody) {
			t.Errorf("%s: %d %s, want the same 404 as a missing repository: %s", path, resp.StatusCode, body, wantBody)
		}
	}
	// Elsewhere an invalid name stays 400 NAME_INVALID, as the spec says.
	if resp, body := get(t, r.URL+"/v2/UPPER/case/manifests/v1"); resp.StatusCode != http.StatusBadRequest || errorCode(t, body) != "NAME_INVALID" {
		t.Errorf("manifest GET with an invalid name: %d %s", resp.StatusCode, body)
	}
}

// TestSignedURLEndsWithLastLink: a signed URL serves its blob while some
// repository links it; once the blob is deleted from every repository the
// URL answers 404 at once, long before it expires or GC removes the bytes.
func TestSignedURLEndsWithLastLink(t *testing.T) {
	r, d := redirectingWithLayer(t, "revoke/a:v1", 1)
	// The same blob in a second repository (mounted).
	resp, err := http.Post(r.URL+"/v2/revoke/b/blobs/uploads/?mount="+d.String()+"&from=revoke/a", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount: %d", resp.StatusCode)
	}
	redirect, _ := get(t, r.URL+"/v2/revoke/a/blobs/"+d.String())
	signed := redirect.Header.Get("Location")
	if redirect.StatusCode != http.StatusTemporaryRedirect || signed == "" {
		t.Fatalf("redirect: %d %q", redirect.StatusCode, signed)
	}
	for i, repo := range []string{"revoke/a", "revoke/b"} {
		if resp, _ := get(t, signed); resp.StatusCode != http.StatusOK {
			t.Fatalf("signed URL with %d link(s) left: %d, want 200", 2-i, resp.StatusCode)
		}
		req, _ := http.NewRequest("DELETE", r.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
		dresp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		dresp.Body.Close()
		if dresp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE %s: %d", repo, dresp.StatusCode)
		}
	}
	resp, body := get(t, signed)
	if resp.StatusCode != http.StatusNotFound || errorCode(t, body) != "BLOB_UNKNOWN" {
		t.Fatalf("signed URL after the last link went: %d %s, want 404 BLOB_UNKNOWN", resp.StatusCode, body)
	}
}

// redirectingWithLayer starts a registry that redirects blob GETs, pushes
// an image of layers layers to repoTag and returns its first layer.
func redirectingWithLayer(t *testing.T, repoTag string, layers int) (*wharftest.Registry, v1.Hash) {
	t.Helper()
	r := wharftest.Start(t, wharftest.Options{Redirect: true})
	ls, err := pushImage(t, r, repoTag, layers).Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r, d
}

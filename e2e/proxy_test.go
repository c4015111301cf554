package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
)

// TestProxyPullThrough: an image in Distribution pulls through Wharf with
// the same digest, each blob fetched from upstream once; a second pull
// asks upstream for nothing while the tag is fresh.
func TestProxyPullThrough(t *testing.T) {
	f := newProxyFixture(t, time.Hour)
	img := randomImage(t, 3, true)
	f.pushUpstream(t, "team/app:v1", img)
	want, _ := img.Digest()
	f.front.reset()
	got, err := f.pull(t, "dist/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("pulled %s through the cache, upstream has %s", got, want)
	}
	// 3 layers and the config, once each.
	if n := f.front.count("GET blob"); n != 4 {
		t.Errorf("upstream blob GETs on a cold pull: %d, want 4 (one per blob)", n)
	}
	f.front.reset()
	if got, err := f.pull(t, "dist/team/app:v1"); err != nil || got != want {
		t.Fatalf("warm pull: %s, %v", got, err)
	}
	if n := f.front.count("GET blob") + f.front.count("GET manifest") + f.front.count("HEAD manifest"); n != 0 {
		t.Errorf("a warm pull within tag_ttl sent upstream %d requests: %v", n, f.front.counts)
	}
	// By digest: cached, never revalidated.
	if _, err := f.pull(t, "dist/team/app@"+want.String()); err != nil {
		t.Fatal(err)
	}
	if n := f.front.count("HEAD manifest"); n != 0 {
		t.Errorf("a pull by digest revalidated upstream (%d HEADs)", n)
	}
	// Outside every prefix Wharf is itself; under it, read-only.
	resp := do(t, http.MethodPost, f.wharf.URL+"/v2/dist/team/app/blobs/uploads/", nil)
	expectError(t, "push into the cache", resp, http.StatusForbidden, "DENIED")
	if !strings.Contains(string(resp.Body), "pull-through cache") {
		t.Errorf("push refusal does not say why: %s", resp.Body)
	}
	resp = do(t, http.MethodDelete, f.wharf.URL+"/v2/dist/team/app/manifests/"+want.String(), nil)
	expectError(t, "delete in the cache", resp, http.StatusForbidden, "DENIED")
}

// TestProxyColdPullsCoalesce: many clients pulling one uncached image at
// once cause exactly one upstream GET per blob.
func TestProxyColdPullsCoalesce(t *testing.T) {
	f := newProxyFixture(t, time.Hour)
	// Before the registry stops: 50 clients at once leave connections
	// that never carried a request, which a server shutdown waits 5 s for.
	t.Cleanup(remote.DefaultTransport.(*http.Transport).CloseIdleConnections)
	img := randomImage(t, 5, true)
	f.pushUpstream(t, "team/many:v1", img)
	want, _ := img.Digest()
	f.front.reset()
	const clients = 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := f.pull(t, "dist/team/many:v1")
			if err == nil && got != want {
				err = fmt.Errorf("digest %s, want %s", got, want)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.front.count("GET blob"); n != 6 {
		t.Errorf("%d clients at once: %d upstream blob GETs, want 6 (one per blob)", clients, n)
	}
	if n := f.front.count("GET manifest"); n != 1 {
		t.Errorf("%d clients at once: %d upstream manifest GETs, want 1", clients, n)
	}
	// The metrics say the same: 6 blob and 1 manifest fetches upstream,
	// 6 blob bytes' worth, and requests that shared a fetch.
	fams := scrape(t, f.wharf.URL)
	if n := value(fams, "wharf_proxy_upstream_requests_total", "op", "blob", "outcome", "ok"); n != 6 {
		t.Errorf("wharf_proxy_upstream_requests_total{op=blob,outcome=ok} = %v, want 6", n)
	}
	if n := value(fams, "wharf_proxy_upstream_requests_total", "op", "manifest", "outcome", "ok"); n != 1 {
		t.Errorf("wharf_proxy_upstream_requests_total{op=manifest} = %v, want 1", n)
	}
	size, _ := img.Size()
	layers, _ := img.Layers()
	var total int64
	for _, l := range layers {
		n, _ := l.Size()
		total += n
	}
	cfg, _ := img.RawConfigFile()
	if n := value(fams, "wharf_proxy_upstream_bytes_total"); n != float64(total+int64(len(cfg))) {
		t.Errorf("wharf_proxy_upstream_bytes_total = %v, want %d (manifest %d bytes not counted)", n, total+int64(len(cfg)), size)
	}
	if value(fams, "wharf_proxy_cache_total", "result", "miss") < 7 || value(fams, "wharf_proxy_cache_total", "result", "coalesced") == 0 {
		t.Errorf("wharf_proxy_cache_total: miss %v, coalesced %v", value(fams, "wharf_proxy_cache_total", "result", "miss"), value(fams, "wharf_proxy_cache_total", "result", "coalesced"))
	}
}

// TestProxyUpstreamFaults: upstream's faults never become ours. A cached
// tag is served (with a Warning) whatever upstream does; an uncached one
// gets upstream's 429 with Retry-After, a 404 as a 404, and a 502 when
// upstream fails or is unreachable.
func TestProxyUpstreamFaults(t *testing.T) {
	f := newProxyFixture(t, 0) // revalidate every tag pull
	img := randomImage(t, 2, true)
	f.pushUpstream(t, "team/app:v1", img)
	want, _ := img.Digest()
	if _, err := f.pull(t, "dist/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	accept := "Accept: " + oci.MediaTypeOCIManifest
	f.front.retryAfter.Store("1") // the pause it starts is TestProxyRateLimited's
	for _, fault := range []string{"500", "down", "429"} {
		f.front.fault.Store(fault)
		got, err := f.pull(t, "dist/team/app:v1")
		if err != nil || got != want {
			t.Errorf("upstream %s: cached tag pull: %s, %v", fault, got, err)
		}
		r := do(t, http.MethodGet, f.wharf.URL+"/v2/dist/team/app/manifests/v1", nil, accept)
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Warning"), "110 ") {
			t.Errorf("upstream %s: cached tag: %d, Warning %q; want 200 with a 110 Warning", fault, r.Status, r.Header.Get("Warning"))
		}
		if n := value(scrape(t, f.wharf.URL), "wharf_proxy_cache_total", "result", "stale"); n == 0 {
			t.Errorf("upstream %s: no stale serve counted", fault)
		}
		r = do(t, http.MethodGet, f.wharf.URL+"/v2/dist/team/other/manifests/v1", nil, accept)
		switch fault {
		case "429":
			expectError(t, "uncached tag, upstream 429", r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
			if ra := r.Header.Get("Retry-After"); ra != "1" {
				t.Errorf("upstream 429: Retry-After %q, want upstream's 1", ra)
			}
		default:
			expectError(t, "uncached tag, upstream "+fault, r, http.StatusBadGateway, "UNAVAILABLE")
		}
	}
	f.front.fault.Store("")
	time.Sleep(1100 * time.Millisecond) // the 429's pause
	r := do(t, http.MethodGet, f.wharf.URL+"/v2/dist/team/other/manifests/v1", nil, accept)
	expectError(t, "a tag upstream does not have", r, http.StatusNotFound, "MANIFEST_UNKNOWN")
	r = do(t, http.MethodGet, f.wharf.URL+"/v2/dist/team/app/blobs/sha256:"+strings.Repeat("0", 64), nil)
	expectError(t, "a blob upstream does not have", r, http.StatusNotFound, "BLOB_UNKNOWN")

	// The tag moves upstream: the next pull (tag_ttl 0) follows it.
	moved := randomImage(t, 1, true)
	f.pushUpstream(t, "team/app:v1", moved)
	wantMoved, _ := moved.Digest()
	if got, err := f.pull(t, "dist/team/app:v1"); err != nil || got != wantMoved {
		t.Fatalf("after the tag moved upstream: %s, %v; want %s", got, err, wantMoved)
	}
}

// TestProxyStreamsBlobs: a blob not cached yet is streamed to its
// clients while it arrives from upstream: with upstream holding the
// second half back, a HEAD already answers (the size is upstream's
// Content-Length), three concurrent GETs already read everything but the
// last byte (held back until the blob is verified and stored), and all
// of it is one upstream GET. Then the blob is cached and served as any
// other.
func TestProxyStreamsBlobs(t *testing.T) {
	f := newProxyFixture(t, time.Hour)
	img := randomImage(t, 1, true)
	f.pushUpstream(t, "team/app:v1", img)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	blobURL := f.wharf.URL + "/v2/dist/team/app/blobs/" + d.String()
	f.front.reset()
	f.front.hold = make(chan struct{})
	f.front.fault.Store("hold")

	// Were a request to wait for the whole blob, it would wait forever.
	c := &http.Client{Timeout: 10 * time.Second}
	head, err := c.Head(blobURL)
	if err != nil {
		t.Fatalf("HEAD of a blob being fetched: %v", err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.ContentLength != size {
		t.Fatalf("HEAD of a blob being fetched: %d, Content-Length %d, want 200 and %d", head.StatusCode, head.ContentLength, size)
	}
	type result struct {
		body []byte
		err  error
	}
	results := make(chan result, 3)
	half := size / 2
	for range 3 {
		resp, err := c.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
			t.Fatalf("GET of a blob being fetched: %d, length %d", resp.StatusCode, resp.ContentLength)
		}
		first := make([]byte, half)
		if _, err := io.ReadFull(resp.Body, first); err != nil { // upstream sent only this much so far
			t.Fatalf("the first half did not stream: %v", err)
		}
		go func() {
			rest, err := io.ReadAll(resp.Body)
			results <- result{append(first, rest...), err}
		}()
	}
	// A range of what has not arrived yet waits for it.
	ranged := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, blobURL, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", half))
		resp, err := c.Do(req)
		if err != nil {
			ranged <- result{nil, err}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		b, rerr := io.ReadAll(resp.Body)
		ranged <- result{b, errors.Join(err, rerr)}
	}()
	close(f.front.hold)
	blob, _ := layers[0].Compressed()
	whole := testhttp.ReadAll(t, blob)
	if res := <-ranged; res.err != nil || !bytes.Equal(res.body, whole[half:]) {
		t.Errorf("Range bytes=%d- of a blob being fetched: %d bytes, %v", half, len(res.body), res.err)
	}
	for range 3 {
		res := <-results
		if res.err != nil || digest.FromBytes(res.body).String() != d.String() {
			t.Errorf("streamed blob: %d bytes, %v; want all of %s", len(res.body), res.err, d)
		}
	}
	f.front.fault.Store("")
	if n := f.front.count("GET blob"); n != 1 {
		t.Errorf("a HEAD and three GETs of one blob being fetched: %d upstream GETs, want 1", n)
	}
	if resp, got := testhttp.Get(t, nil, blobURL); resp.StatusCode != http.StatusOK || digest.FromBytes(got).String() != d.String() {
		t.Errorf("the cached blob: %d, %d bytes", resp.StatusCode, len(got))
	}
	if n := f.front.count("GET blob"); n != 1 {
		t.Errorf("the cached blob went upstream again (%d GETs)", n)
	}
}

// TestProxyRateLimited: while upstream has asked the cache to wait, the
// cache sends it nothing of what the wait covers (no request storm):
// cached tags are served stale, uncached ones get a 429 with what is left
// of the wait. A 429's Retry-After covers every request; Docker Hub's
// "RateLimit-Remaining: 0" covers manifest GETs (what Docker Hub counts),
// while HEADs (which it does not count) go on and lift the pause once
// they report pulls left.
func TestProxyRateLimited(t *testing.T) {
	f := newProxyFixture(t, 0)
	img := randomImage(t, 1, true)
	f.pushUpstream(t, "team/app:v1", img)
	f.pushUpstream(t, "team/other:v1", randomImage(t, 1, true))
	f.pushUpstream(t, "team/third:v1", randomImage(t, 1, true))
	want, _ := img.Digest()
	if _, err := f.pull(t, "dist/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	accept := "Accept: " + oci.MediaTypeOCIManifest
	uncached := func(repo string) *response {
		return do(t, http.MethodGet, f.wharf.URL+"/v2/dist/"+repo+"/manifests/v1", nil, accept)
	}
	upstream := func() int {
		return f.front.count("HEAD manifest") + f.front.count("GET manifest") + f.front.count("GET blob")
	}

	f.front.fault.Store("429") // Retry-After: 7
	expectError(t, "uncached tag, upstream 429", uncached("team/other"), http.StatusTooManyRequests, "TOOMANYREQUESTS")
	f.front.fault.Store("") // upstream would answer now; the cache still waits as told
	f.front.reset()
	for range 20 {
		r := uncached("team/other")
		expectError(t, "uncached tag while paused", r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
		if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 1 || ra > 7 {
			t.Fatalf("paused: Retry-After %q, want what is left of upstream's 7", r.Header.Get("Retry-After"))
		}
		if got, err := f.pull(t, "dist/team/app:v1"); err != nil || got != want {
			t.Fatalf("cached tag while paused: %s, %v", got, err)
		}
	}
	if n := upstream(); n != 0 {
		t.Errorf("%d upstream requests while paused by a 429's Retry-After, want 0", n)
	}
	if n := value(scrape(t, f.wharf.URL), "wharf_proxy_upstream_requests_total", "op", "head", "outcome", "paused"); n < 40 {
		t.Errorf("paused HEADs counted: %v, want ≥ 40 (two a round)", n)
	}

	// Docker Hub's quota used up: HEADs go on, manifest GETs wait.
	fresh := newProxyFixture(t, 0)
	fresh.pushUpstream(t, "team/app:v1", img)
	fresh.pushUpstream(t, "team/other:v1", randomImage(t, 1, true))
	if _, err := fresh.pull(t, "dist/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	fresh.front.remaining.Store("0;w=21600")
	if got, err := fresh.pull(t, "dist/team/app:v1"); err != nil || got != want { // its HEAD reports the quota
		t.Fatalf("cached tag, quota used up: %s, %v", got, err)
	}
	fresh.front.reset()
	r := do(t, http.MethodGet, fresh.wharf.URL+"/v2/dist/team/other/manifests/v1", nil, accept)
	expectError(t, "uncached tag, quota used up", r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 1 || ra > 60 {
		t.Errorf("quota used up: Retry-After %q, want up to a minute", r.Header.Get("Retry-After"))
	}
	if n := fresh.front.count("GET manifest"); n != 0 {
		t.Errorf("%d manifest GETs sent with the quota used up, want 0", n)
	}
	if n := fresh.front.count("HEAD manifest"); n != 1 {
		t.Errorf("%d HEADs, want 1 (HEADs are not counted by Docker Hub and go on)", n)
	}
	fresh.front.remaining.Store("12;w=21600") // the next HEAD says pulls are left
	r = do(t, http.MethodGet, fresh.wharf.URL+"/v2/dist/team/other/manifests/v1", nil, accept)
	expectStatus(t, "uncached tag, quota back", r, http.StatusOK)
}

// TestProxyTokenUpstream: a second Wharf in token mode as an upstream
// that wants credentials: the cache logs in (the bearer-token dance with
// a pull scope) with the configured user and password file; the client
// never sees them. Wrong credentials are a 502 that says so.
func TestProxyTokenUpstream(t *testing.T) {
	up := wharftest.StartAuth(t, service.ModeToken)
	ref, err := name.ParseReference(up.Host+"/team/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t, 2, true)
	admin := authn.FromConfig(authn.AuthConfig{Username: "admin", Password: wharftest.AuthUsers["admin"]})
	if err := remote.Write(ref, img, remote.WithAuth(admin)); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	start := func(password string) *proxyFixture {
		pw := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := wharftest.Start(t, wharftest.Options{Config: func(c *config.Config) {
			c.Proxy.Upstreams = []config.Upstream{{Prefix: "up", URL: up.URL, Username: "reader", PasswordFile: pw}}
		}})
		return &proxyFixture{wharf: r}
	}
	f := start(wharftest.AuthUsers["reader"])
	if got, err := f.pull(t, "up/team/app:v1"); err != nil || got != want {
		t.Fatalf("pull through a token-mode upstream: %s, %v; want %s", got, err, want)
	}
	bad := start("wrong")
	r := do(t, http.MethodGet, bad.wharf.URL+"/v2/up/team/app/manifests/v1", nil, "Accept: "+oci.MediaTypeOCIManifest)
	expectError(t, "wrong upstream password", r, http.StatusBadGateway, "UNAVAILABLE")
	if !strings.Contains(string(r.Body), "credentials") || strings.Contains(string(r.Body), "wrong") || strings.Contains(string(r.Body), "reader") {
		t.Errorf("refused credentials: %s; want a message about credentials that shows none", r.Body)
	}
}

// TestProxyUpstreamStall: an upstream that accepts and never answers is a
// 504 soon after the upstream's timeout, not a request held for minutes.
func TestProxyUpstreamStall(t *testing.T) {
	stall := make(chan struct{})
	ln := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stall }))
	defer func() { close(stall); ln.Close() }()
	timeout := 300 * time.Millisecond
	r := wharftest.Start(t, wharftest.Options{Config: func(c *config.Config) {
		c.Proxy.Upstreams = []config.Upstream{{Prefix: "slow", URL: ln.URL, Timeout: timeout}}
	}})
	begin := time.Now()
	resp := do(t, http.MethodGet, r.URL+"/v2/slow/team/app/manifests/v1", nil, "Accept: "+oci.MediaTypeOCIManifest)
	expectError(t, "stalled upstream", resp, http.StatusGatewayTimeout, "UNAVAILABLE")
	if d := time.Since(begin); d > 10*timeout {
		t.Errorf("a stalled upstream held the request %v (timeout %v)", d, timeout)
	}

	// A blob body that stops midway: the fetch fails after timeout of
	// silence (the streaming GET ends short, the batch endpoint answers
	// 504), nothing is kept, and the next pull fetches it whole.
	f := startProxyFixture(t, time.Hour, timeout, true)
	img := randomImage(t, 1, true)
	f.pushUpstream(t, "team/app:v1", img)
	f.front.hold = make(chan struct{}) // never closed: a trickle that stopped
	f.front.fault.Store("hold")
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	begin = time.Now()
	get, err := http.Get(f.wharf.URL + "/v2/dist/team/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, rerr := io.ReadAll(get.Body)
	get.Body.Close()
	if get.StatusCode != http.StatusOK || rerr == nil {
		t.Errorf("a blob upstream stopped sending: %d, %d bytes, %v; want 200 cut short", get.StatusCode, len(body), rerr)
	}
	resp = do(t, http.MethodGet, f.wharf.URL+"/v2/dist/team/app/manifests/v1/blobs", nil)
	expectError(t, "batch endpoint, a blob upstream stopped sending", resp, http.StatusGatewayTimeout, "UNAVAILABLE")
	if d := time.Since(begin); d > 20*timeout {
		t.Errorf("a silent blob body held the requests %v (timeout %v)", d, timeout)
	}
	f.front.fault.Store("")
	if _, err := f.pull(t, "dist/team/app:v1"); err != nil {
		t.Errorf("pull after the stall: %v", err)
	}
}

// TestProxySignedURLs: cached blobs are served like pushed ones: a 307 to
// a signed URL, and the batch endpoint once the image's blobs are cached.
func TestProxySignedURLs(t *testing.T) {
	f := newProxyFixture(t, time.Hour, true)
	img := randomImage(t, 2, true)
	f.pushUpstream(t, "team/app:v1", img)
	if _, err := f.pull(t, "dist/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	resp, _ := testhttp.Get(t, testhttp.NoRedirects, f.wharf.URL+"/v2/dist/team/app/blobs/"+d.String())
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(resp.Header.Get("Location"), "/_wharf/blobs/"+d.String()) {
		t.Fatalf("cached blob GET: %d Location %q, want a 307 to a signed URL", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := testhttp.Get(t, nil, f.wharf.URL+"/v2/dist/team/app/manifests/v1/blobs")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), d.String()) {
		t.Fatalf("batch endpoint on a cached image: %d %s", resp.StatusCode, body)
	}
	// An image never pulled: the batch endpoint fetches its blobs first,
	// and every URL it hands out serves its blob.
	fresh := randomImage(t, 3, true)
	f.pushUpstream(t, "team/fresh:v1", fresh)
	f.front.reset()
	resp, body = testhttp.Get(t, nil, f.wharf.URL+"/v2/dist/team/fresh/manifests/v1/blobs")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch endpoint on an uncached image: %d %s", resp.StatusCode, body)
	}
	var a struct {
		Blobs []struct {
			Digest, DownloadURL string
		} `json:"blobs"`
	}
	if err := json.Unmarshal(body, &a); err != nil || len(a.Blobs) != 4 {
		t.Fatalf("batch answer %s: %v", body, err)
	}
	for _, b := range a.Blobs {
		if r, got := testhttp.Get(t, nil, b.DownloadURL); r.StatusCode != 200 || digest.FromBytes(got).String() != b.Digest {
			t.Errorf("%s: %d, %d bytes", b.DownloadURL, r.StatusCode, len(got))
		}
	}
	if n := f.front.count("GET blob"); n != 4 {
		t.Errorf("upstream blob GETs for the batch answer: %d, want 4", n)
	}
	// wharf pull of another uncached image: one batch request.
	other := randomImage(t, 2, true)
	f.pushUpstream(t, "team/other:v1", other)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections) // else the server's shutdown waits 5 s for a connection never used
	c := client.New(client.Options{Transport: tr})
	res, err := c.Pull(t.Context(), f.wharf.Host+"/dist/team/other:v1", t.TempDir(), client.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := other.Digest(); !res.Batch || res.Digest.String() != want.String() {
		t.Errorf("wharf pull through the cache: batch %v, digest %s, want %s", res.Batch, res.Digest, want)
	}
}

// TestProxySkopeo: skopeo, a client of its own (containers/image), pulls
// through the cache and sees upstream's digest.
func TestProxySkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		wharftest.SkipOrFail(t, "skopeo not installed (apt-get install skopeo)")
	}
	f := newProxyFixture(t, time.Hour)
	img := randomImage(t, 2, true)
	f.pushUpstream(t, "team/app:v1", img)
	want, _ := img.Digest()
	src := "docker://" + f.wharf.Host + "/dist/team/app:v1"
	dir := t.TempDir()
	if out, err := exec.Command(skopeo, "copy", "--src-tls-verify=false", src, "oci:"+dir+":app").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--raw", src).Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	if got := digest.FromBytes(out); got.String() != want.String() {
		t.Errorf("skopeo read manifest %s through the cache, upstream has %s", got, want)
	}
	layout, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil || !strings.Contains(string(layout), want.String()) {
		t.Errorf("skopeo's layout index %s does not name %s (%v)", layout, want, err)
	}
}

// TestProxyBrokenBlobs: a blob cut off midway or corrupted by upstream
// fails that fetch and stores nothing. A GET streaming it ends short (its
// status went out with the first bytes; no client receives a whole body
// that does not hash to its digest); the batch endpoint, which fetches
// first, answers 502 saying why. The next pull, with upstream healthy,
// fetches it again and succeeds.
func TestProxyBrokenBlobs(t *testing.T) {
	f := newProxyFixture(t, time.Hour, true)
	img := randomImage(t, 1, true)
	f.pushUpstream(t, "team/app:v1", img)
	want, _ := img.Digest()
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	blobURL := f.wharf.URL + "/v2/dist/team/app/blobs/" + d.String()
	for _, fault := range []string{"cut", "corrupt"} {
		f.front.fault.Store(fault)
		resp, err := testhttp.NoRedirects.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || rerr == nil || int64(len(body)) >= size {
			t.Errorf("upstream blob %s, streamed: status %d, %d of %d bytes, read error %v; want 200 cut short", fault, resp.StatusCode, len(body), size, rerr)
		}
		r := do(t, http.MethodGet, f.wharf.URL+"/v2/dist/team/app/manifests/v1/blobs", nil)
		expectError(t, "batch endpoint, upstream blob "+fault, r, http.StatusBadGateway, "UNAVAILABLE")
		if fault == "corrupt" && !strings.Contains(string(r.Body), "does not match its digest") {
			t.Errorf("corrupt blob: %s; want it said", r.Body)
		}
	}
	f.front.fault.Store("")
	f.front.reset()
	if got, err := f.pull(t, "dist/team/app:v1"); err != nil || got != want {
		t.Fatalf("pull after the faults: %s, %v", got, err)
	}
	// The layer and the config again (the faults broke both; nothing of
	// the broken fetches was kept).
	if n := f.front.count("GET blob"); n != 2 {
		t.Errorf("pull after the faults: %d upstream blob GETs, want 2", n)
	}
}

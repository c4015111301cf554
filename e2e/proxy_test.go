package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
)

// upstreamFront is a reverse proxy in front of an upstream registry that
// counts what reaches it and injects faults: the test's view of what the
// pull-through cache asks upstream.
type upstreamFront struct {
	*httptest.Server
	mu     sync.Mutex
	counts map[string]int // "GET blob", "HEAD manifest", ...
	// fault: "" passes through; "429" answers 429 with Retry-After 7;
	// "500"; "down" cuts every connection.
	fault atomic.Value
}

func newUpstreamFront(t *testing.T, target string) *upstreamFront {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &upstreamFront{counts: map[string]int{}}
	f.fault.Store("")
	rp := httputil.NewSingleHostReverseProxy(u)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "other"
		switch {
		case strings.Contains(r.URL.Path, "/blobs/"):
			kind = "blob"
		case strings.Contains(r.URL.Path, "/manifests/"):
			kind = "manifest"
		}
		f.mu.Lock()
		f.counts[r.Method+" "+kind]++
		f.mu.Unlock()
		switch f.fault.Load().(string) {
		case "429":
			w.Header().Set("Retry-After", "7")
			http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, http.StatusTooManyRequests)
			return
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case "down":
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		case "cut", "corrupt": // blob bodies only: half of it then a cut, or one byte changed
			if kind == "blob" && r.Method == http.MethodGet {
				rec := httptest.NewRecorder()
				rp.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				if rec.Code != http.StatusOK {
					w.WriteHeader(rec.Code)
					_, _ = w.Write(body)
					return
				}
				if f.fault.Load() == "corrupt" {
					body[len(body)/2] ^= 0xff
					w.WriteHeader(http.StatusOK)
					_, _ = w.Write(body)
					return
				}
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(body[:len(body)/2])
				if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
					c.Close()
				}
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *upstreamFront) count(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[k]
}

func (f *upstreamFront) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts = map[string]int{}
}

// proxyFixture is Distribution 2.8 holding content, a counting front and
// a Wharf caching it under the prefix "dist".
type proxyFixture struct {
	dist  *wharftest.Distribution
	front *upstreamFront
	wharf *wharftest.Registry
}

func newProxyFixture(t *testing.T, ttl time.Duration, redirect ...bool) *proxyFixture {
	dist := wharftest.StartDistribution(t)
	front := newUpstreamFront(t, dist.URL)
	r := wharftest.Start(t, wharftest.Options{Redirect: len(redirect) > 0 && redirect[0], Config: func(c *config.Config) {
		c.Proxy.Upstreams = []config.Upstream{{Prefix: "dist", URL: front.URL, TagTTL: &ttl, Timeout: 5 * time.Second}}
	}})
	return &proxyFixture{dist: dist, front: front, wharf: r}
}

// pushUpstream pushes img to Distribution as repo:tag.
func (f *proxyFixture) pushUpstream(t *testing.T, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(f.dist.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

// pull pulls repoTag through Wharf and reads every layer; it returns the
// manifest digest.
func (f *proxyFixture) pull(t *testing.T, repoTag string) (v1.Hash, error) {
	t.Helper()
	ref, err := name.ParseReference(f.wharf.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest as it reads
		if err != nil {
			return v1.Hash{}, err
		}
		testhttp.ReadAll(t, rc)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

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
	// Before the registry stops: 20 clients at once leave connections
	// that never carried a request, which a server shutdown waits 5 s for.
	t.Cleanup(remote.DefaultTransport.(*http.Transport).CloseIdleConnections)
	img := randomImage(t, 5, true)
	f.pushUpstream(t, "team/many:v1", img)
	want, _ := img.Digest()
	f.front.reset()
	const clients = 20
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
	for _, fault := range []string{"429", "500", "down"} {
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
			if ra := r.Header.Get("Retry-After"); ra != "7" {
				t.Errorf("upstream 429: Retry-After %q, want upstream's 7", ra)
			}
		default:
			expectError(t, "uncached tag, upstream "+fault, r, http.StatusBadGateway, "UNAVAILABLE")
		}
	}
	f.front.fault.Store("")
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
// fails that fetch with a 502 and stores nothing; the next pull, with
// upstream healthy, fetches it again and succeeds.
func TestProxyBrokenBlobs(t *testing.T) {
	f := newProxyFixture(t, time.Hour)
	img := randomImage(t, 1, true)
	f.pushUpstream(t, "team/app:v1", img)
	want, _ := img.Digest()
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	blobURL := f.wharf.URL + "/v2/dist/team/app/blobs/" + d.String()
	for _, fault := range []string{"cut", "corrupt"} {
		f.front.fault.Store(fault)
		r := do(t, http.MethodGet, blobURL, nil)
		expectError(t, "upstream blob "+fault, r, http.StatusBadGateway, "UNAVAILABLE")
		if fault == "corrupt" && !strings.Contains(string(r.Body), "does not match its digest") {
			t.Errorf("corrupt blob: %s; want it said", r.Body)
		}
	}
	f.front.fault.Store("")
	f.front.reset()
	if got, err := f.pull(t, "dist/team/app:v1"); err != nil || got != want {
		t.Fatalf("pull after the faults: %s, %v", got, err)
	}
	// The layer again (nothing of the broken fetches was kept) and the
	// config, which no one had asked for yet.
	if n := f.front.count("GET blob"); n != 2 {
		t.Errorf("pull after the faults: %d upstream blob GETs, want 2", n)
	}
}

package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// upstreamFront is a reverse proxy in front of an upstream registry that
// counts what reaches it and injects faults: the test's view of what the
// pull-through cache asks upstream.
type upstreamFront struct {
	*httptest.Server
	mu     sync.Mutex
	counts map[string]int // "GET blob", "HEAD manifest", ...
	// fault: "" passes through; "429" answers 429 with Retry-After
	// retryAfter (default 7); "500"; "down" cuts every connection.
	fault      atomic.Value
	retryAfter atomic.Value
	// hold: with fault "hold", blob bodies stop after their first half
	// until hold is closed ("trickle": forever).
	hold chan struct{}
	// remaining, when set, is sent as Docker Hub's RateLimit-Remaining
	// header on every answer ("0;w=21600": the pulls are used up).
	remaining atomic.Value
}

func newUpstreamFront(t *testing.T, target string) *upstreamFront {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &upstreamFront{counts: map[string]int{}}
	f.fault.Store("")
	f.retryAfter.Store("7")
	f.remaining.Store("")
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
		if v := f.remaining.Load().(string); v != "" {
			w.Header().Set("RateLimit-Limit", "100;w=21600")
			w.Header().Set("RateLimit-Remaining", v)
		}
		switch f.fault.Load().(string) {
		case "429":
			w.Header().Set("Retry-After", f.retryAfter.Load().(string))
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
		case "cut", "corrupt", "hold": // blob bodies only: half of it then a cut, one byte changed, or a wait
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
				if f.fault.Load() == "hold" {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.WriteHeader(http.StatusOK)
					_, _ = w.Write(body[:len(body)/2])
					w.(http.Flusher).Flush()
					select {
					case <-f.hold:
					case <-r.Context().Done():
						return
					}
					_, _ = w.Write(body[len(body)/2:])
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
	return startProxyFixture(t, ttl, 5*time.Second, len(redirect) > 0 && redirect[0])
}

// startProxyFixture is newProxyFixture with the upstream's timeout.
func startProxyFixture(t *testing.T, ttl, timeout time.Duration, redirect bool) *proxyFixture {
	dist := wharftest.StartDistribution(t)
	front := newUpstreamFront(t, dist.URL)
	r := wharftest.Start(t, wharftest.Options{Redirect: redirect, Config: func(c *config.Config) {
		c.Proxy.Upstreams = []config.Upstream{{Prefix: "dist", URL: front.URL, TagTTL: &ttl, Timeout: timeout}}
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

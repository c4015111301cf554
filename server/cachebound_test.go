package server_test

import (
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/auth/token"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
)

// heapAlloc is the live heap after a full collection.
func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// heapBound is what one kind of hostile input may leave on the heap:
// the caches' budgets in these tests are far smaller, so that a cache
// that held what callers send would show far beyond them.
const (
	heapBound      = 16 << 20
	testCacheBytes = 4 << 20
)

// send does one request and drains the answer.
func send(t *testing.T, c *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %.80s: %v", req.Method, req.URL, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestCachesNotSizedByCallers sends each kind of oversized or unique
// input the issue measured, in bounded numbers over real HTTP, and
// checks the live heap afterwards: no cache may keep what a caller sent.
func TestCachesNotSizedByCallers(t *testing.T) {
	r := wharftest.Start(t, wharftest.Options{Registry: registry.Options{CacheMaxBytes: testCacheBytes}})
	pushImage(t, r, "team/app:v1", 5)
	c := &http.Client{}
	t.Cleanup(c.CloseIdleConnections)

	measure := func(t *testing.T, what string, run func()) {
		t.Helper()
		before := heapAlloc()
		run()
		c.CloseIdleConnections()
		grew := heapAlloc() - before
		t.Logf("%s: heap grew by %.1f MB", what, float64(grew)/1e6)
		if grew > heapBound {
			t.Errorf("%s: the heap grew by %d bytes, more than %d", what, grew, heapBound)
		}
	}
	big := func(n int, i int) string { return fmt.Sprintf("%08d", i) + strings.Repeat("a", n-8) }

	t.Run("batch with a huge Host", func(t *testing.T) {
		measure(t, "20 batch requests with a 500 KB Host", func() {
			for i := range 20 {
				req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/team/app/manifests/v1/blobs", nil)
				req.Host = big(500<<10, i)
				if st := send(t, c, req); st != http.StatusOK && st != http.StatusBadRequest {
					t.Fatalf("status %d", st)
				}
			}
		})
	})
	t.Run("batch with unique Hosts and a huge query", func(t *testing.T) {
		// Each answer is cached (the Host is its URLs' base); none may
		// keep the request line its repository name was cut from.
		measure(t, "40 batch requests with unique Hosts and a 1 MB query", func() {
			q := strings.Repeat("q", 1_000_000)
			for i := range 40 {
				req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/team/app/manifests/v1/blobs?x="+q, nil)
				req.Host = big(200, i)
				if st := send(t, c, req); st != http.StatusOK {
					t.Fatalf("status %d", st)
				}
			}
		})
	})
	t.Run("unique missing names", func(t *testing.T) {
		measure(t, "40 unique missing names with a 1 MB query", func() {
			q := strings.Repeat("q", 1_000_000)
			for i := range 40 {
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v2/missing/n%d/manifests/latest?x=%s", r.URL, i, q), nil)
				if st := send(t, c, req); st != http.StatusNotFound {
					t.Fatalf("status %d", st)
				}
			}
		})
	})
	t.Run("tags list with a huge last", func(t *testing.T) {
		measure(t, "40 tags/list?last=<1 MB>", func() {
			for i := range 40 {
				req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/team/app/tags/list?last="+big(1_000_000, i), nil)
				if st := send(t, c, req); st != http.StatusOK && st != http.StatusBadRequest {
					t.Fatalf("status %d", st)
				}
			}
		})
	})
	t.Run("tokens with many scopes", func(t *testing.T) {
		tr, iss := startTokenRegistry(t)
		measure(t, "30 anonymous tokens with 10,000 scopes", func() {
			for i := range 30 {
				access := make([]auth.Access, 10_000)
				for j := range access {
					access[j] = auth.Access{Type: "repository", Name: fmt.Sprintf("public/t%d/r%05d", i, j), Actions: []string{"pull"}}
				}
				tok, _, err := iss.Issue("", access, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				req, _ := http.NewRequest(http.MethodGet, tr.URL+fmt.Sprintf("/v2/public/t%d/r00000/tags/list", i), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				if st := send(t, c, req); st != http.StatusNotFound {
					t.Fatalf("status %d", st)
				}
			}
		})
	})
}

// startTokenRegistry runs a token-mode registry whose anonymous callers
// may pull public/**, and returns the issuer its tokens come from.
func startTokenRegistry(t *testing.T) (*wharftest.Registry, *token.Issuer) {
	t.Helper()
	dir := t.TempDir()
	policy, err := auth.CompilePolicy(auth.PolicySpec{AnonymousPull: []string{"public/**"}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.LoadOrCreateSigningKey(filepath.Join(dir, "token-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(key, "wharf-test-issuer", "wharf-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := service.Options{Mode: service.ModeToken, Policy: policy, Service: "wharf-test", Issuer: iss,
		Verifier: token.NewVerifier("wharf-test", nil, &token.KeySet{Issuer: "wharf-test-issuer", Keys: map[string]crypto.PublicKey{"k": key.Public()}}),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)), CacheMaxBytes: testCacheBytes}
	svc, err := service.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return wharftest.Start(t, wharftest.Options{Auth: svc, Handlers: map[string]http.Handler{service.TokenPath: svc.TokenHandler()}}), iss
}

// TestLongHostRefused: a Host longer than a DNS name and a port is
// refused before it is reflected into any URL.
func TestLongHostRefused(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		host   string
		status int
	}{
		{strings.Repeat("h", 253) + ":5000", http.StatusOK},
		{strings.Repeat("h", server.MaxHostBytes-4) + ":5000", http.StatusBadRequest},
		{strings.Repeat("h", 500<<10), http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.r.URL+"/v2/", nil)
		req.Host = tc.host
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.status == http.StatusOK {
			if resp.StatusCode != http.StatusOK {
				t.Errorf("Host of %d bytes: %d %s", len(tc.host), resp.StatusCode, body)
			}
			continue
		}
		wantError(t, http.MethodGet, resp, body, tc.status, "UNSUPPORTED")
	}
}

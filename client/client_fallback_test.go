package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// batchRoute reports whether req is for the batch endpoint.
func batchRoute(req *http.Request) bool {
	return strings.Contains(req.URL.Path, "/manifests/") && strings.HasSuffix(req.URL.Path, "/blobs")
}

// noBatchFront serves a real Wharf without its batch endpoint: the batch
// route answers status and body (as registries without it do), every
// other request goes to Wharf. Basic credentials, when user is set, are
// demanded on every request. It counts batch-route requests and plain
// blob GETs.
type noBatchFront struct {
	host              string
	batchHits, blobGs atomic.Int64
}

func startNoBatchFront(t *testing.T, r *wharftest.Registry, status int, body, user, pass string) *noBatchFront {
	t.Helper()
	f := &noBatchFront{}
	fr := front(t, r, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if user != "" {
				if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
			}
			if batchRoute(req) {
				f.batchHits.Add(1)
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				}
				if strings.HasPrefix(body, "{") {
					w.Header().Set("Content-Type", "application/json")
				}
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
				return
			}
			if strings.Contains(req.URL.Path, "/blobs/sha256:") {
				f.blobGs.Add(1)
			}
			next.ServeHTTP(w, req)
		})
	})
	f.host = strings.TrimPrefix(fr.URL, "http://")
	return f
}

// Every answer of the batch route that means "no such endpoint" makes the
// client use the standard API, once detected per registry.
func TestFallbackToStandardAPI(t *testing.T) {
	r := wharftest.Start(t)
	img := push(t, r.Host, "fb/app:v1", 2048, 3)
	_, nblobs := imageSize(t, img)
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"404-manifest-unknown", 404, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`},
		{"404-plain", 404, "404 page not found\n"},
		{"405", 405, ""},
		{"501", 501, "not implemented"},
		{"400-not-oci", 400, "bad request"},
		{"400-unsupported", 400, `{"errors":[{"code":"UNSUPPORTED","message":"unsupported"}]}`},
		{"401", 401, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`},
		{"403", 403, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startNoBatchFront(t, r, tc.status, tc.body, "", "")
			c := client.New(client.Options{Jobs: 2})
			for i := range 2 {
				dir := t.TempDir()
				res, err := c.Pull(context.Background(), f.host+"/fb/app:v1", dir, client.Selection{})
				if err != nil {
					t.Fatalf("pull %d: %v", i, err)
				}
				checkLayout(t, dir, img)
				if res.Batch {
					t.Errorf("pull %d: reported as a batch pull", i)
				}
			}
			if f.batchHits.Load() != 1 {
				t.Errorf("batch route asked %d times, want once (detected per registry)", f.batchHits.Load())
			}
			if f.blobGs.Load() != int64(2*nblobs) {
				t.Errorf("%d plain blob GETs, want %d", f.blobGs.Load(), 2*nblobs)
			}
		})
	}
	// the ambiguous 404 for a reference neither API knows: not found, and
	// the registry is not written off
	t.Run("404-manifest-unknown-missing", func(t *testing.T) {
		f := startNoBatchFront(t, r, 404, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, "", "")
		c := client.New(client.Options{})
		_, err := c.Pull(context.Background(), f.host+"/fb/app:nope", t.TempDir(), client.Selection{})
		var nf *client.NotFoundError
		if !errors.As(err, &nf) {
			t.Fatalf("got %v, want a NotFoundError", err)
		}
		if _, err := c.Pull(context.Background(), f.host+"/fb/app:v1", t.TempDir(), client.Selection{}); err != nil {
			t.Fatal(err)
		}
		if f.batchHits.Load() != 2 {
			t.Errorf("batch route asked %d times, want 2 (a missing reference settles nothing)", f.batchHits.Load())
		}
	})
	// a 400 the batch endpoint itself gives is the user's error, not a fallback
	t.Run("400-expiry-invalid", func(t *testing.T) {
		f := startNoBatchFront(t, r, 400, `{"errors":[{"code":"EXPIRY_INVALID","message":"expiry out of range"}]}`, "", "")
		c := client.New(client.Options{})
		_, err := c.Pull(context.Background(), f.host+"/fb/app:v1", t.TempDir(), client.Selection{})
		if err == nil || !strings.Contains(err.Error(), "EXPIRY_INVALID") {
			t.Fatalf("got %v, want the batch endpoint's EXPIRY_INVALID", err)
		}
	})
}

// A registry that demands credentials and answers the unknown batch route
// with 401 even to a client that has them: the pull goes on with the
// standard API; without credentials, the standard API's refusal is what
// the user sees.
func TestFallbackAfter401WithCredentials(t *testing.T) {
	r := wharftest.Start(t)
	img := push(t, r.Host, "fb/app:v1", 2048, 3)
	f := startNoBatchFront(t, r, 401, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, "alice", "secret")
	c := client.New(client.Options{Keychain: client.StaticKeychain("alice", "secret")})
	pullChecked(t, c, f.host+"/fb/app:v1", img)

	c = client.New(client.Options{Keychain: client.StaticKeychain("", "")})
	_, err := c.Pull(context.Background(), f.host+"/fb/app:v1", t.TempDir(), client.Selection{})
	if err == nil || !strings.Contains(err.Error(), "authentication required") || strings.Contains(err.Error(), "batch") {
		t.Fatalf("anonymous: %v, want the standard API's authentication error", err)
	}
}

// Package wharftest starts real Wharf registries for tests: the embedded
// shape (SQLite + filesystem) in a temporary directory, served over real
// HTTP on a loopback port.
package wharftest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/health"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/metrics"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
	"github.com/wharf-registry/wharf/signer"
)

// Registry is a running test registry.
type Registry struct {
	// URL is the base URL, "http://127.0.0.1:PORT".
	URL string
	// Host is URL without the scheme, for image references.
	Host string
	// Dir holds the registry's data (wharf.db and blobs/).
	Dir      string
	Registry *registry.Registry
	HTTP     *httptest.Server
	// Metrics and Health are set with Options.Production.
	Metrics *metrics.Metrics
	Health  *health.Checker
}

// Options tune a test registry.
type Options struct {
	Registry registry.Options
	// Dir reuses a data directory (to test restarts); empty makes a new one.
	Dir string
	// Redirect turns on 307 redirects of blob GETs.
	Redirect bool
	// Keys replaces the generated signing key: the first signs, all verify.
	Keys []signer.Key
	// Blobs replaces the filesystem blob store under Dir (an S3 store on
	// MinIO, say). Registry.Signer picks the signer (an S3 store signs
	// its own pre-signed URLs); the local signer is the default.
	Blobs registry.BlobStore
	// Auth decides requests (nil allows everything).
	Auth auth.Authorizer
	// Handlers are served beside /v2/, by path pattern (the token
	// endpoint: {"/token": svc.TokenHandler()}).
	Handlers map[string]http.Handler
	// Production adds what `wharf serve` runs with by default: Prometheus
	// metrics on /metrics (stores, signer and auth instrumented), /livez
	// and /readyz, request ids.
	Production bool
	// Server adjusts the server's options last (rate limits, timeouts).
	Server func(*server.Options)
	// Meta wraps the SQLite metadata store (to inject a failure into one
	// operation of the real store).
	Meta func(registry.MetadataStore) registry.MetadataStore
}

// Start runs a registry until the test ends.
func Start(t testing.TB, opts ...Options) *Registry {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	dir := o.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	blobs := o.Blobs
	if blobs == nil {
		fs, err := filesystem.New(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		blobs = fs
	}
	meta, err := sqlite.Open(context.Background(), filepath.Join(dir, "wharf.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("WHARF_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	keys := o.Keys
	if len(keys) == 0 {
		_, keys, err = signer.LoadOrCreateKeys(filepath.Join(dir, "signing-keys.json"))
		if err != nil {
			t.Fatal(err)
		}
	}
	sign, err := signer.NewLocal(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	ro := o.Registry
	ro.Logger = log
	if ro.Signer == nil {
		ro.Signer = sign
	}
	var met *metrics.Metrics
	regMeta, regBlobs, authz := registry.MetadataStore(meta), blobs, o.Auth
	if o.Meta != nil {
		regMeta = o.Meta(regMeta)
	}
	if o.Production {
		met = metrics.New()
		regMeta, regBlobs, ro.Signer = met.MetadataStore(meta), met.BlobStore(blobs), met.Signer(ro.Signer)
		if authz == nil {
			authz = auth.AllowAll{}
		}
		authz = met.Authorizer(authz)
	}
	reg := registry.New(regMeta, regBlobs, ro)
	so := server.Options{Registry: reg, Logger: log, Downloads: sign, Redirect: o.Redirect, Now: ro.Now, Auth: authz}
	if met != nil {
		so.Observer, so.RequestIDs = met, true
	}
	if o.Server != nil {
		o.Server(&so)
	}
	srv := server.New(so)
	var checker *health.Checker
	if met != nil {
		checks := health.Embedded(meta, filepath.Join(dir, "wharf.db"), filepath.Join(dir, "blobs"))
		if p, ok := blobs.(health.Pinger); ok {
			checks[1] = health.Ping("blobs", p)
		}
		checker = health.New(health.Options{}, checks...)
		met.SignatureCache(reg.SignatureCacheStats)
		met.UploadsInProgress(srv.UploadsInProgress)
		srv.Handle("/metrics", met.Handler())
		srv.Handle("/livez", health.Livez())
		srv.Handle("/readyz", checker.Readyz())
	}
	for pattern, h := range o.Handlers {
		srv.Handle(pattern, h)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		meta.Close()
	})
	return &Registry{URL: hs.URL, Host: strings.TrimPrefix(hs.URL, "http://"), Dir: dir, Registry: reg, HTTP: hs, Metrics: met, Health: checker}
}

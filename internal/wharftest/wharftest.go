// Package wharftest starts real Wharf registries for tests: the embedded
// shape (SQLite + filesystem) in a temporary directory, built by package
// app exactly as `wharf serve` builds it and served over real HTTP on a
// loopback port.
package wharftest

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/health"
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
	// Handler is the registry's HTTP handler (to serve it behind a test's
	// own wrapper).
	Handler http.Handler
	// Metrics and Health are the app's (metrics are on by default).
	Metrics *metrics.Metrics
	Health  *health.Checker
	stop    func()
}

// Stop stops serving (gracefully: in-flight requests finish) before the
// test ends; the stores stay open, for the test to inspect, until cleanup.
func (r *Registry) Stop() { r.stop() }

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
	// Auth decides requests (nil: the configuration's, auth.mode none
	// unless Config sets it).
	Auth auth.Authorizer
	// Handlers are served beside /v2/, by path pattern.
	Handlers map[string]http.Handler
	// Config adjusts the configuration the registry is built from.
	Config func(*config.Config)
	// Server adjusts the server's options last (rate limits, timeouts).
	Server func(*server.Options)
	// Meta wraps the SQLite metadata store (to inject a failure into one
	// operation of the real store); the metrics and tracing decorators
	// wrap the result, as they wrap the real store in production.
	Meta func(registry.MetadataStore) registry.MetadataStore
	// Log receives the registry's log lines (default: discarded, or stderr
	// with WHARFDEV_TEST_LOG set).
	Log io.Writer
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
	cfg := config.Default()
	cfg.DataDir, cfg.Addr = dir, "127.0.0.1:0"
	cfg.Redirect.Enabled = o.Redirect
	cfg.HTTP.DrainDelay = 0
	if len(o.Keys) > 0 {
		var ks []string
		for _, k := range o.Keys {
			ks = append(ks, k.ID+":"+base64.StdEncoding.EncodeToString(k.Secret))
		}
		cfg.Signing.Keys = strings.Join(ks, ",")
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var w io.Writer = io.Discard
	level := slog.LevelInfo
	switch {
	case o.Log != nil:
		w = o.Log
	case os.Getenv("WHARFDEV_TEST_LOG") != "":
		w, level = os.Stderr, slog.LevelDebug
	}
	log := slog.New(server.ContextHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ao := app.Options{Logger: log, Listener: ln, Version: "test", Metadata: o.Meta, Blobs: o.Blobs, Auth: o.Auth,
		Handlers: o.Handlers, Server: o.Server}
	ro := o.Registry
	ao.Registry = func(r *registry.Options) {
		if ro.Now != nil {
			r.Now = ro.Now
		}
		if ro.Signer != nil {
			r.Signer = ro.Signer
		}
		if ro.MaxManifestBytes != 0 {
			r.MaxManifestBytes = ro.MaxManifestBytes
		}
		if ro.MaxManifestReferences != 0 {
			r.MaxManifestReferences = ro.MaxManifestReferences
		}
		if ro.CacheMaxBytes != 0 {
			r.CacheMaxBytes = ro.CacheMaxBytes
		}
	}
	a, err := app.New(context.Background(), cfg, ao)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registry: %v", err)
		}
	}
	t.Cleanup(func() { stop(); a.Close() })
	url := "http://" + ln.Addr().String()
	return &Registry{URL: url, Host: ln.Addr().String(), Dir: dir, Registry: a.Registry(), Handler: a.Handler(),
		Metrics: a.Metrics(), Health: a.Health(), stop: stop}
}

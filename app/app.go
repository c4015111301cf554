// Package app is Wharf's composition root: it builds the whole registry
// from a configuration — stores, signer, authorization, the HTTP server,
// production concerns and background workers — and runs it. `wharf serve`
// is this package plus flags and signals; the tests start the same code
// with Options for what they inject.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/health"
	"github.com/wharf-registry/wharf/metrics"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
	"github.com/wharf-registry/wharf/signer"
)

// Options are what a caller of New adds to the configuration. The zero
// value is `wharf serve`.
type Options struct {
	// Logger receives every log line (default slog.Default()).
	Logger *slog.Logger
	// Version is reported in the startup line and traces.
	Version string
	// Listener serves instead of listening on cfg.Addr.
	Listener net.Listener

	// What tests inject. Metadata wraps the opened metadata store before
	// the instrumenting decorators (so a failure it injects is counted and
	// traced like a real one); Blobs replaces the configured blob store;
	// Auth replaces the configured authorizer; Registry and Server adjust
	// the core's and the server's options last; Handlers are served beside
	// /v2/.
	Metadata func(registry.MetadataStore) registry.MetadataStore
	Blobs    registry.BlobStore
	Auth     auth.Authorizer
	Registry func(*registry.Options)
	Server   func(*server.Options)
	Handlers map[string]http.Handler
}

// App is a built registry, ready to Run.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	version  string
	meta     MetaStore
	blobs    registry.BlobStore
	blobRoot string
	reg      *registry.Registry
	srv      *server.Server
	auth     auth.Authorizer
	ops      *ops
	ln       net.Listener
	hs       *http.Server
	closers  []func()
}

// New opens the stores of cfg and builds everything around them; Close
// releases what it opened.
func New(ctx context.Context, cfg config.Config, o Options) (a *App, err error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	a = &App{cfg: cfg, log: log, version: o.Version}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	warnPerReplicaFiles(cfg, log)

	blobs, blobRoot := o.Blobs, BlobRoot(cfg)
	if blobs == nil {
		if blobs, blobRoot, err = OpenBlobStore(ctx, cfg); err != nil {
			return nil, err
		}
	}
	a.blobs, a.blobRoot = blobs, blobRoot
	meta, dbPath, err := OpenMetadata(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.meta = meta
	a.closers = append(a.closers, func() { meta.Close() })

	active, keys, err := signingKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	sign, err := signer.NewLocal(active, keys...)
	if err != nil {
		return nil, err
	}
	urls, err := urlSigner(cfg, blobs, sign)
	if err != nil {
		return nil, err
	}
	a.ops = newOps(cfg, log, o.Version)
	if err := a.ops.startTracing(ctx); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.ops.stopTracing) // after the server's shutdown: flushes every request's span

	var regMeta registry.MetadataStore = meta
	if o.Metadata != nil {
		regMeta = o.Metadata(regMeta)
	}
	regMeta, regBlobs, urls := a.ops.stores(regMeta, blobs, urls)
	routes, closeUpstreams, err := proxyRoutes(cfg, log, o.Version, a.ops.upstream)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeUpstreams)
	ro := registry.Options{MaxManifestBytes: cfg.Limits.ManifestMaxBytes, MaxManifestReferences: cfg.Limits.ManifestMaxReferences,
		CacheMaxBytes: cfg.Limits.CacheMaxBytes, Logger: log, Signer: urls, Proxy: routes, ProxyEvent: a.ops.proxyEvent()}
	if o.Registry != nil {
		o.Registry(&ro)
	}
	a.reg = registry.New(regMeta, regBlobs, ro)

	authz, tokenHandler := o.Auth, http.Handler(nil)
	if authz == nil {
		if authz, tokenHandler, err = newAuth(cfg, log); err != nil {
			return nil, err
		}
	}
	a.auth = authz
	if svc, ok := authz.(*service.Service); ok {
		a.ops.adminOnly = svc.AdminOnly
	}
	so := server.Options{
		Registry: a.reg, Logger: log, PublicURL: cfg.PublicURL, Auth: a.ops.authorizer(authz),
		Downloads: sign, Redirect: cfg.Redirect.Enabled, RedirectExpiry: cfg.Redirect.Expiry, Now: ro.Now,
	}
	if err := a.ops.serverOptions(&so); err != nil {
		return nil, err
	}
	if o.Server != nil {
		o.Server(&so)
	}
	a.srv = server.New(so)
	if err := a.ops.routes(a.srv, a.reg, checks(cfg, meta, blobs, blobRoot)); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { a.ops.close(context.Background()) })
	if tokenHandler != nil {
		a.srv.Handle(service.TokenPath, tokenHandler)
	}
	for pattern, h := range o.Handlers {
		a.srv.Handle(pattern, h)
	}

	tlsConfig, err := newTLSConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	a.ln = o.Listener
	if a.ln == nil {
		if a.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, err
		}
	}
	a.hs = &http.Server{
		Handler:           a.srv,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	warnPlainHTTP(cfg, a.ln, log)
	log.Info("wharf ready", "version", o.Version, "addr", a.ln.Addr().String(),
		"metadata", dbPath, "blobs", blobRoot, "signing_key", active.ID, "signer", cfg.Signing.Signer, "redirect", cfg.Redirect.Enabled,
		"auth", cfg.Auth.Mode, "tls", tlsConfig != nil)
	return a, nil
}

// Addr is the address the registry listens on.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// Registry is the registry core (tests call it directly).
func (a *App) Registry() *registry.Registry { return a.reg }

// Metrics is the Prometheus registry of the app (nil with metrics off).
func (a *App) Metrics() *metrics.Metrics { return a.ops.metrics }

// Health is the readiness checker.
func (a *App) Health() *health.Checker { return a.ops.health }

// Authorizer is the authorizer requests go through (before metrics).
func (a *App) Authorizer() auth.Authorizer { return a.auth }

// Run serves until ctx is done, then drains (/readyz fails for
// http.drain_delay) and shuts down gracefully: when it returns, no request
// is in flight. It also runs the background workers (following other
// replicas' writes, the maintenance worker) until then. The stores stay
// open until Close.
func (a *App) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	background(bg, a.cfg, a.meta, a.reg, a.blobs, a.log)
	errc := make(chan error, 1)
	go func() {
		if a.hs.TLSConfig != nil {
			errc <- a.hs.ServeTLS(a.ln, "", "")
			return
		}
		errc <- a.hs.Serve(a.ln)
	}()
	a.log.Info("wharf serving", "addr", a.ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.ops.drain(context.Background())
	a.log.Info("shutting down: finishing in-flight requests", "timeout", a.cfg.HTTP.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := a.hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	a.log.Info("stopped")
	return nil
}

// Reload applies what of next can change while running (see
// reloadPolicy); it reports what it did in the log.
func (a *App) Reload(next config.Config) {
	svc, _ := a.auth.(*service.Service)
	a.cfg = reloadPolicy(a.log, a.cfg, next, svc)
}

// Close releases the stores and listeners, in reverse order of opening.
// It is safe to call more than once.
func (a *App) Close() {
	if a.ln != nil {
		a.ln.Close() // after Shutdown: already closed, harmless
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Handler is the registry's HTTP handler: /v2/, the signed-download
// route, health, and whatever else New mounted.
func (a *App) Handler() http.Handler { return a.srv }

package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/health"
	"github.com/wharf-registry/wharf/metrics"
	"github.com/wharf-registry/wharf/ratelimit"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
	"github.com/wharf-registry/wharf/tracing"
)

// ops is what "Running in production" adds around the registry: metrics,
// tracing, health, rate limits, request ids, slow-client timeouts.
type ops struct {
	cfg     config.Config
	metrics *metrics.Metrics  // nil when metrics.enabled is false
	tracing *tracing.Provider // nil when tracing.enabled is false
	health  *health.Checker
	log     *slog.Logger
	version string
	msrv    *http.Server // the metrics listener, when metrics.addr is set
	// adminOnly guards /metrics on the main listener (auth basic/token:
	// admins only); nil serves it to everyone.
	adminOnly func(http.Handler) http.Handler
}

func newOps(cfg config.Config, log *slog.Logger, version string) *ops {
	o := &ops{cfg: cfg, log: log, version: version}
	if cfg.Metrics.Enabled {
		o.metrics = metrics.New()
	}
	return o
}

// startTracing creates the tracer provider when tracing.enabled is set.
func (o *ops) startTracing(ctx context.Context) error {
	t := o.cfg.Tracing
	if !t.Enabled {
		return nil
	}
	p, err := tracing.New(ctx, tracing.Options{Endpoint: t.Endpoint, SampleRatio: t.SampleRatio, ServiceName: t.ServiceName, ServiceVersion: o.version})
	if err != nil {
		return err
	}
	o.tracing = p
	o.log.Info("tracing on", "endpoint", t.Endpoint, "sample_ratio", t.SampleRatio, "service_name", t.ServiceName)
	return nil
}

// stopTracing flushes the spans not yet exported and stops the provider.
func (o *ops) stopTracing() {
	if o.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.tracing.Shutdown(ctx); err != nil {
		o.log.Warn("tracing shutdown", "err", err)
	}
}

// stores wraps the stores and the signer with the instrumenting
// decorators of metrics and of tracing, for those that are on.
func (o *ops) stores(meta registry.MetadataStore, blobs registry.BlobStore, sign registry.Signer) (registry.MetadataStore, registry.BlobStore, registry.Signer) {
	if o.metrics != nil {
		meta, blobs = o.metrics.MetadataStore(meta), o.metrics.BlobStore(blobs)
		if sign != nil {
			sign = o.metrics.Signer(sign)
		}
	}
	if o.tracing != nil {
		t := o.tracing.Tracer()
		meta, blobs = tracing.MetadataStore(t, meta), tracing.BlobStore(t, blobs)
		if sign != nil {
			sign = tracing.Signer(t, sign)
		}
	}
	return meta, blobs, sign
}

// authorizer wraps a (nil: allow all) like stores wraps the stores.
// upstream instruments a pull-through cache's upstream.
func (o *ops) upstream(u registry.Upstream) registry.Upstream {
	if o.metrics == nil {
		return u
	}
	return o.metrics.Upstream(u)
}

// proxyEvent is the core's pull-through cache outcome counter (nil
// without metrics).
func (o *ops) proxyEvent() func(string) {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.ProxyEvent
}

func (o *ops) authorizer(a auth.Authorizer) auth.Authorizer {
	if o.metrics == nil && o.tracing == nil {
		return a
	}
	if a == nil {
		a = auth.AllowAll{}
	}
	if o.metrics != nil {
		a = o.metrics.Authorizer(a)
	}
	if o.tracing != nil {
		a = tracing.Authorizer(o.tracing.Tracer(), a)
	}
	return a
}

// serverOptions fills the server's production options from the config.
func (o *ops) serverOptions(so *server.Options) error {
	cfg := o.cfg
	if o.metrics != nil {
		so.Observer = o.metrics
	}
	if o.tracing != nil {
		so.Tracer, so.Propagator = o.tracing.Tracer(), tracing.Propagator()
	}
	r := cfg.Limits.Rate
	burst := func(rate, b int) int {
		if b > 0 {
			return b
		}
		return 2 * rate
	}
	lim := ratelimit.New(map[string]ratelimit.Rule{
		server.ActionPull:  {PerSecond: float64(r.Pull), Burst: burst(r.Pull, r.PullBurst)},
		server.ActionPush:  {PerSecond: float64(r.Push), Burst: burst(r.Push, r.PushBurst)},
		server.ActionBatch: {PerSecond: float64(r.Batch), Burst: burst(r.Batch, r.BatchBurst)},
	}, r.Clients, nil)
	if lim.Enabled() {
		so.Limiter = lim
	}
	so.MaxUploads = cfg.Limits.ConcurrentUploads
	so.MaxUploadBody = cfg.Limits.UploadBodyMaxBytes
	so.MaxUploadsPerClient = cfg.Limits.ConcurrentUploadsPerClient
	so.MinUploadRate, so.TransferRateWindow = cfg.Limits.UploadMinRate, cfg.Limits.UploadRateWindow
	so.MaxUploadDuration = cfg.Limits.UploadMaxDuration
	so.RequestIDs = cfg.HTTP.RequestID
	proxies, err := config.ParseCIDRs(cfg.HTTP.TrustedProxies)
	if err != nil {
		return err
	}
	so.TrustedProxies = proxies
	switch cfg.Log.Access {
	case "off":
		so.AccessLogOff = true
	case "debug":
		so.AccessLog = slog.LevelDebug
	default:
		so.AccessLog = slog.LevelInfo
	}
	so.RequestTimeout = cfg.HTTP.RequestTimeout
	so.IdleTimeout = cfg.HTTP.TransferIdleTimeout
	return nil
}

// checks are the readiness checks of the configured stores: the metadata
// store's Ping (and, for SQLite, that its file is still there and
// readable), the blob store's Ping or, for the filesystem store, its
// directories. Migrations ran before serving started (OpenMetadata), so a
// serving replica has its schema.
func checks(cfg config.Config, meta registry.MetadataStore, blobs registry.BlobStore, blobRoot string) []health.Check {
	embedded := health.Embedded(meta, SQLitePath(cfg), blobRoot)
	cs := []health.Check{health.Ping("metadata", meta)}
	if cfg.Metadata.Driver == config.MetadataSQLite {
		cs[0] = embedded[0]
	}
	if p, ok := blobs.(health.Pinger); ok {
		cs = append(cs, health.Ping("blobs", p))
	} else if cfg.Storage.Driver == config.StorageFilesystem {
		cs = append(cs, embedded[1])
	}
	return cs
}

// routes adds the health endpoints, and /metrics unless it has its own
// listener, to the main server; it starts the metrics listener if any.
// With auth on, /metrics on the main listener is for admins: it is open
// to whoever reaches that listener otherwise, while metrics.addr is meant
// for a private network.
func (o *ops) routes(srv *server.Server, reg *registry.Registry, cs []health.Check) error {
	o.health = health.New(health.Options{}, cs...)
	srv.Handle("/livez", health.Livez())
	srv.Handle("/readyz", o.health.Readyz())
	if o.metrics != nil {
		o.metrics.SignatureCache(reg.SignatureCacheStats)
		o.metrics.UploadsInProgress(srv.UploadsInProgress)
	}
	if o.cfg.Metrics.Addr == "" {
		if o.metrics != nil {
			h := o.metrics.Handler()
			if o.adminOnly != nil {
				h = o.adminOnly(h)
				o.log.Info("/metrics on the main listener answers admins only (Basic credentials); set metrics.addr to scrape it on a private listener without credentials")
			}
			srv.Handle("/metrics", h)
		}
		return nil
	}
	mux := http.NewServeMux()
	if o.metrics != nil {
		mux.Handle("/metrics", o.metrics.Handler())
	}
	mux.Handle("/livez", health.Livez())
	mux.Handle("/readyz", o.health.Readyz())
	if o.cfg.Metrics.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", o.cfg.Metrics.Addr)
	if err != nil {
		return fmt.Errorf("metrics.addr: %w", err)
	}
	o.msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	o.log.Info("metrics serving", "addr", ln.Addr().String(), "pprof", o.cfg.Metrics.Pprof)
	go func() { _ = o.msrv.Serve(ln) }()
	return nil
}

// drain makes /readyz fail and, if a load balancer has been polling it,
// waits http.drain_delay so it takes the replica out before the listener
// closes. It returns early when ctx is done (a second signal).
func (o *ops) drain(ctx context.Context) {
	if o.health == nil {
		return
	}
	o.health.Drain()
	d := o.cfg.HTTP.DrainDelay
	if d <= 0 || !o.health.Polled() {
		return
	}
	o.log.Info("draining: /readyz fails; waiting before shutdown", "drain_delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// close stops the metrics listener.
func (o *ops) close(ctx context.Context) {
	if o.msrv != nil {
		_ = o.msrv.Shutdown(ctx)
	}
}

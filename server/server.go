// Package server is Wharf's HTTP face: the /v2/ router, one thin handler per
// endpoint, and the middleware around them. Handlers translate HTTP into
// registry calls and *oci.Error values into OCI error responses; no storage
// logic lives here.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Options configure a Server.
type Options struct {
	Registry *registry.Registry
	// Auth decides requests; nil allows everything.
	Auth auth.Authorizer
	// Logger receives access logs and errors; nil uses slog.Default().
	Logger *slog.Logger
	// PublicURL, when set ("https://registry.example.com"), is the base of
	// every absolute URL the server hands out (upload locations, signed
	// URLs); otherwise it is derived from the request.
	PublicURL string
	// Downloads verifies URLs of the signed-download route; nil disables
	// the route.
	Downloads DownloadVerifier
	// Redirect makes blob GETs answer 307 with a signed URL valid for
	// RedirectExpiry, when the registry has a signer.
	Redirect       bool
	RedirectExpiry time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	// Observer is told about every finished request (metrics); nil: none.
	Observer Observer
	// Limiter rate-limits authorized requests per action and caller;
	// nil: no rate limit.
	Limiter Limiter
	// MaxUploads caps concurrent upload requests (POST, PATCH, PUT with
	// blob bytes); more get 429 with Retry-After. 0: no cap.
	MaxUploads int
	// MaxUploadBody bounds the body of one upload request (413 above);
	// 0: no bound.
	MaxUploadBody int64
	// MaxUploadsPerClient caps one caller's (user's, else client
	// address's) concurrent upload requests, so one client cannot take
	// every slot of MaxUploads; more get 429. 0: no cap.
	MaxUploadsPerClient int
	// MinUploadRate cuts an upload body that delivers fewer than this many
	// bytes per second over a TransferRateWindow (one byte a minute would
	// otherwise hold a slot forever). 0: no minimum.
	MinUploadRate      int64
	TransferRateWindow time.Duration
	// MaxUploadDuration bounds how long one upload request's body may
	// take in all, however steadily it moves. 0: no bound.
	MaxUploadDuration time.Duration
	// RequestIDs sets X-Request-Id on every response and in every log
	// line of the request. An incoming X-Request-Id is kept only from a
	// peer in TrustedProxies (which also name whose X-Forwarded-For is
	// believed for the client address).
	RequestIDs     bool
	TrustedProxies []netip.Prefix
	// AccessLog is the level of the one log line per request;
	// AccessLogOff turns it off.
	AccessLog    slog.Level
	AccessLogOff bool
	// RequestTimeout bounds reading and answering a request that moves
	// no blob bytes; IdleTimeout cuts a blob transfer (upload body or
	// download) that makes no progress for that long. 0: no limit.
	RequestTimeout time.Duration
	IdleTimeout    time.Duration
	// Tracer, when set, makes one server span per request, named by its
	// route template, continuing the trace of an incoming traceparent
	// (read by Propagator; nil: W3C trace context). nil: no tracing, not
	// one tracer call.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// DefaultRedirectExpiry is how long a redirect's signed URL lives.
const DefaultRedirectExpiry = 20 * time.Minute

// Server serves the OCI Distribution API.
type Server struct {
	reg            *registry.Registry
	auth           auth.Authorizer
	log            *slog.Logger
	publicURL      string
	mux            *http.ServeMux
	downloads      DownloadVerifier
	redirect       bool
	redirectExpiry time.Duration
	now            func() time.Time

	observer       Observer
	limiter        Limiter
	maxUploads     int
	maxUploadBody  int64
	uploads        atomic.Int64
	perClient      clientCounts
	minUploadRate  int64
	rateWindow     time.Duration
	maxUploadTime  time.Duration
	requestIDs     bool
	trustedProxies []netip.Prefix
	accessLevel    slog.Level
	accessOff      bool
	requestTimeout time.Duration
	idleTimeout    time.Duration
	tracer         trace.Tracer // nil: tracing off
	propagator     propagation.TextMapPropagator
}

// New returns a Server.
func New(o Options) *Server {
	s := &Server{
		reg: o.Registry, auth: o.Auth, log: o.Logger, publicURL: strings.TrimRight(o.PublicURL, "/"),
		downloads: o.Downloads, redirect: o.Redirect, redirectExpiry: o.RedirectExpiry, now: o.Now,
		observer: o.Observer, limiter: o.Limiter, maxUploads: o.MaxUploads, maxUploadBody: o.MaxUploadBody, requestIDs: o.RequestIDs,
		trustedProxies: o.TrustedProxies, accessLevel: o.AccessLog, accessOff: o.AccessLogOff,
		requestTimeout: o.RequestTimeout, idleTimeout: o.IdleTimeout,
		perClient: clientCounts{max: o.MaxUploadsPerClient}, minUploadRate: o.MinUploadRate,
		rateWindow: o.TransferRateWindow, maxUploadTime: o.MaxUploadDuration,
		tracer: o.Tracer, propagator: o.Propagator,
	}
	if s.tracer != nil && s.propagator == nil {
		s.propagator = propagation.TraceContext{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.redirectExpiry <= 0 {
		s.redirectExpiry = DefaultRedirectExpiry
	}
	if s.auth == nil {
		s.auth = auth.AllowAll{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = slog.New(ContextHandler(s.log.Handler()))
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v2/", s.serveV2)
	s.mux.HandleFunc("/v2", s.serveV2)
	if s.downloads != nil {
		s.mux.HandleFunc(DownloadPrefix, s.download)
	}
	return s
}

// Handle adds a handler for a path outside /v2/ (health, signed downloads).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler with logging and panic recovery
// around every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	info := &requestInfo{blobs: -1}
	ctx := r.Context()
	viaProxy := false
	if len(s.trustedProxies) > 0 {
		if peer := remoteAddr(r); s.trusted(peer) {
			viaProxy = true
			info.client = s.clientAddr(r, peer, true)
			ctx = auth.ViaProxy(ctx, info.client)
		}
	}
	if s.requestIDs {
		if id := r.Header.Get("X-Request-Id"); id != "" && viaProxy && validRequestID(id) {
			info.id = id
		} else {
			info.id = newRequestID()
		}
		rw.Header().Set("X-Request-Id", info.id)
	}
	var span trace.Span // nil unless tracing is on
	if s.tracer != nil {
		ctx, span = s.startSpan(ctx, r)
	}
	r = r.WithContext(context.WithValue(ctx, infoKey{}, info))
	if r.Body != nil && r.Body != http.NoBody {
		// Wrapped (on our copy of the request) before anyone reads it, so
		// bytes_in is what was read: a chunked body counts, a body cut
		// short counts only the bytes that came.
		info.body = &countingBody{ReadCloser: r.Body}
		r.Body = info.body
	}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			s.log.ErrorContext(r.Context(), "panic serving request", "method", r.Method, "path", truncate(r.URL.Path), "panic", p, "stack", string(debug.Stack()))
			if !rw.wroteHeader {
				s.writeError(rw, r, oci.NewError(oci.CodeUnknown))
			}
		}
		s.finish(r, rw, info, start)
		if span != nil {
			s.endSpan(span, r, rw, info)
		}
		if p == http.ErrAbortHandler {
			// A response cut on purpose (a blob whose storage failed
			// mid-stream): logged and its span ended like any other, then
			// net/http drops the connection.
			panic(p)
		}
	}()
	rw.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if len(r.Host) > MaxHostBytes {
		// The Host is reflected into URLs (upload locations, the batch
		// endpoint's, the token realm) and so into caches: refused here.
		s.writeError(rw, r, oci.Errorf(oci.CodeUnsupported, "the Host header exceeds %d bytes", MaxHostBytes).WithStatus(http.StatusBadRequest))
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v2") {
		// /v2/ requests arm their deadlines once routed (serveV2).
		route := RouteNone
		if strings.HasPrefix(r.URL.Path, DownloadPrefix) {
			route = RouteDownload
		} else if _, pattern := s.mux.Handler(r); pattern != "" {
			info.pattern = pattern // registered patterns: a bounded set
		}
		s.setDeadlines(rw, r, rw, route)
		if err := queryError(r); err != nil {
			s.writeError(rw, r, err)
			return
		}
	}
	if p := r.URL.Path; p == "/v2" || strings.HasPrefix(p, "/v2/") {
		// Not through the mux: it redirects "a//b" and "a/../b" to a
		// cleaned path, and a client following a PUT there would write to
		// a repository it did not name. ValidateName refuses such names.
		s.serveV2(rw, r)
		return
	}
	s.mux.ServeHTTP(rw, r)
}

// MaxHostBytes is the longest Host a request may name: a DNS name (at
// most 253 bytes) and a port.
const MaxHostBytes = 261

type infoKey struct{}

// requestInfo carries what the router learned to the access log.
type requestInfo struct {
	route     Route
	repo      string
	id        string        // request id ("" when off)
	user      string        // authenticated caller
	blobs     int           // blobs a batch call returned (-1: not one)
	throttled string        // why the server answered 429 itself
	pattern   string        // the handler pattern of a request outside /v2/
	client    string        // caller's address from X-Forwarded-For via a trusted proxy ("" otherwise)
	body      *countingBody // the request body, counted (nil: none)
}

// bytesIn is how many request-body bytes were read.
func (i *requestInfo) bytesIn() int64 {
	if i.body == nil {
		return 0
	}
	return i.body.n.Load()
}

// countingBody counts the bytes read from a request body and keeps the
// first read error (clientBodyError). Atomic: a store may read the body on
// a goroutine of its own.
type countingBody struct {
	io.ReadCloser
	n   atomic.Int64
	err atomic.Pointer[error]
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// routeLabel is the bounded route of the access log and metrics.
func (i *requestInfo) routeLabel() string {
	if i.route == RouteNone && i.pattern != "" {
		return i.pattern
	}
	return i.route.String()
}

// finish writes the access log line and tells the observer.
func (s *Server) finish(r *http.Request, rw *responseWriter, info *requestInfo, start time.Time) {
	d := time.Since(start)
	status := rw.statusCode()
	bytesIn := info.bytesIn()
	if s.observer != nil {
		s.observer.ObserveRequest(&Observation{
			Method: methodLabel(r.Method), Route: info.route, Status: status, BytesIn: bytesIn,
			BytesOut: rw.bytes, Duration: d, Blobs: info.blobs, Throttled: info.throttled, Pattern: info.pattern,
		})
	}
	if s.accessOff {
		return
	}
	level := s.accessLevel
	switch {
	case status == http.StatusServiceUnavailable:
		// /readyz while draining or a store is down: expected, and polled
		// every second by load balancers; the cause is logged where found.
		level = max(level, slog.LevelWarn)
	case status >= 500:
		level = slog.LevelError
	}
	ctx := r.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", info.routeLabel()),
		slog.String("repo", info.repo),
		slog.Int("status", status),
		slog.Int64("bytes_out", rw.bytes),
		slog.Int64("bytes_in", bytesIn),
		slog.Duration("duration", d),
		slog.String("user", info.user),
		slog.String("remote", r.RemoteAddr),
	}
	if info.client != "" {
		attrs = append(attrs, slog.String("client", info.client))
	}
	s.log.LogAttrs(ctx, level, "request", attrs...)
}

// serveV2 routes a /v2/ request.
func (s *Server) serveV2(w http.ResponseWriter, r *http.Request) {
	m := ParseV2Path(r.URL.Path)
	info, _ := r.Context().Value(infoKey{}).(*requestInfo)
	if info != nil {
		info.route, info.repo = m.Route, m.Name
	}
	if rw, ok := w.(*responseWriter); ok {
		s.setDeadlines(w, r, rw, m.Route)
	}
	if err := queryError(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if m.Route == RouteNone {
		s.writeError(w, r, oci.Errorf(oci.CodeNameUnknown, "no such endpoint: %s", truncate(r.URL.Path)).WithStatus(http.StatusNotFound))
		return
	}
	if m.Name != "" {
		if err := oci.ValidateName(m.Name); err != nil {
			if m.Route == RouteManifestBlobs {
				// The batch contract has one 404 for any repository or
				// reference that is not found; a name that cannot exist
				// is one of them.
				s.writeError(w, r, registry.ErrNotFoundBatch)
				return
			}
			s.writeError(w, r, err)
			return
		}
	}
	h, scope := s.dispatch(m, r.Method)
	if h == nil {
		w.Header().Set("Allow", allowed(m.Route))
		s.writeError(w, r, oci.Errorf(oci.CodeUnsupported, "%s is not supported on %s", r.Method, m.Route))
		return
	}
	scope.Repo = m.Name
	id, err := s.auth.Authorize(r, scope)
	if err != nil {
		if e := oci.AsError(err); e.Code == oci.CodeUnauthorized {
			if c := s.auth.Challenge(r, scope); c != "" {
				w.Header().Set("WWW-Authenticate", c)
			}
		}
		s.writeError(w, r, err)
		return
	}
	if info != nil {
		info.user = id.Subject
	}
	release, ok := s.throttle(w, r, m, id.Subject)
	if !ok {
		return
	}
	if release != nil {
		defer release()
	}
	h(w, r, &call{m: m, id: id})
}

// call is what a handler gets besides the request.
type call struct {
	m  Match
	id auth.Identity
}

type handlerFunc func(http.ResponseWriter, *http.Request, *call)

var (
	pull = auth.Scope{Actions: []auth.Action{auth.Pull}}
	push = auth.Scope{Actions: []auth.Action{auth.Pull, auth.Push}}
	del  = auth.Scope{Actions: []auth.Action{auth.Delete}}
)

// dispatch picks the handler for a route and method, and the access it needs.
func (s *Server) dispatch(m Match, method string) (handlerFunc, auth.Scope) {
	get := method == http.MethodGet || method == http.MethodHead
	switch m.Route {
	case RouteBase:
		if get {
			return s.base, auth.Scope{}
		}
	case RouteCatalog:
		if get {
			return s.catalog, auth.Scope{}
		}
	case RouteTags:
		if get {
			return s.tags, pull
		}
	case RouteManifestBlobs:
		if get {
			return s.blobURLs, pull
		}
	case RouteManifest:
		switch {
		case get:
			return s.getManifest, pull
		case method == http.MethodPut:
			return s.putManifest, push
		case method == http.MethodDelete:
			return s.deleteManifest, del
		}
	case RouteBlob:
		switch {
		case get:
			return s.getBlob, pull
		case method == http.MethodDelete:
			return s.deleteBlob, del
		}
	case RouteUploadStart:
		if method == http.MethodPost {
			return s.startUpload, push
		}
	case RouteUpload:
		switch method {
		case http.MethodGet:
			return s.uploadStatus, push
		case http.MethodPatch:
			return s.patchUpload, push
		case http.MethodPut:
			return s.finishUpload, push
		case http.MethodDelete:
			return s.cancelUpload, push
		}
	case RouteReferrers:
		if get {
			return s.referrers, pull
		}
	}
	return nil, auth.Scope{}
}

func allowed(r Route) string {
	switch r {
	case RouteManifest:
		return "GET, HEAD, PUT, DELETE"
	case RouteBlob:
		return "GET, HEAD, DELETE"
	case RouteUploadStart:
		return "POST"
	case RouteUpload:
		return "GET, PATCH, PUT, DELETE"
	}
	return "GET, HEAD"
}

// writeError sends err as an OCI error response. Errors that are not
// *oci.Error are internal: logged in full, sent as UNKNOWN without detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if ce := s.clientBodyError(r, err); ce != nil {
		err = ce
	}
	// An error that knows when to come back (a locked-out login, a
	// rate-limited upstream) says so.
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > 0 {
		w.Header().Set("Retry-After", itoa(int64((ra.RetryAfter()+time.Second-1)/time.Second)))
	}
	var e *oci.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away; nobody will read the answer.
			e = oci.NewError(oci.CodeUnknown).WithStatus(499)
		} else if e = storeFault(w, err); e != nil {
			s.log.WarnContext(r.Context(), "store unavailable", "method", r.Method, "path", truncate(r.URL.Path), "status", e.Status, "err", err)
		} else {
			s.log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", truncate(r.URL.Path), "err", err)
			e = oci.NewError(oci.CodeUnknown)
		}
	}
	body := e.Body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", itoa(int64(len(body))))
	h.Del("Docker-Content-Digest")
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

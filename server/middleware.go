package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/oci"
)

// Observer is told about every finished request (the metrics package
// implements it). It is called on the request's goroutine after the
// handler returns, so it must be cheap.
type Observer interface {
	ObserveRequest(o *Observation)
}

// Observation is one finished request. Route is a bounded template, never
// a raw path; Method is one of the methods the API knows or "other".
type Observation struct {
	Method string
	Route  Route
	Status int
	// BytesIn is the request-body bytes the server read (not the
	// Content-Length: a chunked body has none, a cut-off one lies).
	BytesIn  int64
	BytesOut int64
	Duration time.Duration
	// Blobs is the number of blobs a successful batch-endpoint call
	// returned (-1 for other requests).
	Blobs int
	// Throttled says why the request was answered 429 by the server
	// itself: "rate" or "uploads" ("" otherwise).
	Throttled string
	// Pattern is the handler pattern of a request outside /v2/ that a
	// handler added with Handle served (Route is then RouteNone).
	Pattern string
}

// Limiter is the rate limit the server applies after authorization: one
// token bucket per (action, key), key being "user:<name>" for an
// authenticated caller and "addr:<client address>" otherwise. Allow
// reports whether the request may go on and, if not, when to retry.
type Limiter interface {
	Allow(action, key string) (ok bool, retryAfter time.Duration)
}

// The actions a Limiter is asked about.
const (
	ActionPull  = "pull"
	ActionPush  = "push"
	ActionBatch = "batch"
)

// methodLabel maps a request method to a bounded label value.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// ---- request ids ----

var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newRequestID returns a process-unique id: a random per-process prefix
// (so replicas never collide) and a counter (so making one costs nothing).
func newRequestID() string {
	var buf [13 + 20]byte
	b := append(buf[:0], idPrefix...)
	b = append(b, '-')
	b = strconv.AppendUint(b, idCounter.Add(1), 10)
	return string(b)
}

// validRequestID accepts ids a trusted proxy sends: short, printable, no
// spaces or quotes (they end up in logs and headers).
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:/+=@", c) >= 0) {
			return false
		}
	}
	return true
}

// RequestID returns the id of the request ctx belongs to ("" outside a
// request).
func RequestID(ctx context.Context) string {
	if info, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return info.id
	}
	return ""
}

// ContextHandler wraps a slog.Handler so that every record logged with a
// request's context (Logger.InfoContext, LogAttrs, ...) carries its
// request_id.
func ContextHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(ctxHandler); ok {
		return h
	}
	return ctxHandler{h}
}

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{h.Handler.WithGroup(name)}
}

// ---- client addresses ----

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// clientAddr is the caller's address: the peer's, or, when the peer is a
// trusted proxy, the right-most address of X-Forwarded-For that is not a
// trusted proxy itself.
func (s *Server) clientAddr(r *http.Request, peer netip.Addr, peerTrusted bool) string {
	if peerTrusted {
		xff := r.Header.Values("X-Forwarded-For")
		for i := len(xff) - 1; i >= 0; i-- {
			parts := strings.Split(xff[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
				if err != nil {
					return peer.String()
				}
				if !s.trusted(a) {
					return a.Unmap().String()
				}
			}
		}
	}
	if !peer.IsValid() {
		return r.RemoteAddr
	}
	return peer.String()
}

// ---- throttling ----

// limitAction is the rate-limit action of a route and method ("" for
// requests that are not limited).
func limitAction(route Route, method string) string {
	switch route {
	case RouteManifestBlobs:
		return ActionBatch
	case RouteBase, RouteNone:
		return ""
	}
	if method == http.MethodGet || method == http.MethodHead {
		return ActionPull
	}
	return ActionPush
}

// tooMany answers 429 TOOMANYREQUESTS with Retry-After (whole seconds,
// at least 1).
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, reason string, after time.Duration, msg string) {
	if info, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		info.throttled = reason
	}
	secs := int64((after + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", itoa(secs))
	s.writeError(w, r, oci.Errorf(oci.CodeTooManyRequests, "%s", msg).WithDetail(map[string]int64{"retryAfterSeconds": secs}))
}

// throttle applies the rate limit and the upload cap to an authorized
// request; it reports false when it has answered 429. release must be
// called when the request ends.
func (s *Server) throttle(w http.ResponseWriter, r *http.Request, m Match, user string) (release func(), ok bool) {
	upload, client := isUploadBody(m.Route, r.Method), callerKey(r, user)
	if upload {
		// Refused here, the body goes unread: close the connection after
		// the answer instead of draining it first (net/http would read up
		// to 256 KiB of a slow body before answering at all).
		w.Header().Set("Connection", "close")
		defer func() {
			if ok {
				w.Header().Del("Connection")
			}
		}()
	}
	if s.limiter != nil {
		if action := limitAction(m.Route, r.Method); action != "" {
			if ok, after := s.limiter.Allow(action, client); !ok {
				s.tooMany(w, r, "rate", after, action+" rate limit exceeded; retry later")
				return nil, false
			}
		}
	}
	if upload {
		if s.maxUploadBody > 0 {
			if r.ContentLength > s.maxUploadBody {
				s.writeError(w, r, oci.Errorf(oci.CodeSizeInvalid, "request body over %d bytes", s.maxUploadBody).WithStatus(http.StatusRequestEntityTooLarge))
				return nil, false
			}
			r.Body = http.MaxBytesReader(w, r.Body, s.maxUploadBody)
		}
		if !s.perClient.acquire(client) {
			s.tooMany(w, r, "uploads", time.Second, "too many uploads in progress from this client; retry later")
			return nil, false
		}
		n := s.uploads.Add(1)
		if s.maxUploads > 0 && n > int64(s.maxUploads) {
			s.uploads.Add(-1)
			s.perClient.release(client)
			s.tooMany(w, r, "uploads", time.Second, "too many uploads in progress; retry later")
			return nil, false
		}
		return func() { s.uploads.Add(-1); s.perClient.release(client) }, true
	}
	return nil, true
}

// callerKey names whom a per-caller limit counts: the authenticated user,
// else the client address (X-Forwarded-For via a trusted proxy).
func callerKey(r *http.Request, user string) string {
	if user != "" {
		return "user:" + user
	}
	return "addr:" + auth.ClientAddr(r)
}

// clientCounts counts requests in flight per caller. An entry lives only
// while its caller has a request in flight, so the map is bounded by the
// requests being served, never by how many callers there have been.
type clientCounts struct {
	max int // 0: no cap (nothing is counted)
	mu  sync.Mutex
	n   map[string]int
}

func (c *clientCounts) acquire(key string) bool {
	if c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

func (c *clientCounts) release(key string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}

// isUploadBody reports whether the request carries blob bytes.
func isUploadBody(route Route, method string) bool {
	switch route {
	case RouteUploadStart:
		return method == http.MethodPost
	case RouteUpload:
		return method == http.MethodPatch || method == http.MethodPut
	}
	return false
}

// UploadsInProgress is the number of upload requests (POST, PATCH, PUT
// with blob bytes) being served now.
func (s *Server) UploadsInProgress() int64 { return s.uploads.Load() }

// ---- slow clients ----

// streams reports whether a route moves blob bytes: such requests get
// idle timeouts (no progress for a while) instead of a total deadline,
// so a large transfer is never cut while it moves.
func streams(route Route) bool {
	switch route {
	case RouteBlob, RouteUploadStart, RouteUpload, RouteDownload:
		return true
	}
	return false
}

// setDeadlines arms the connection's deadlines for one request: a total
// deadline for requests that move no blob bytes, idle deadlines
// (extended as bytes move) for those that do, and for upload bodies a
// minimum rate and a total duration.
func (s *Server) setDeadlines(w http.ResponseWriter, r *http.Request, rw *responseWriter, route Route) {
	upload := r.Body != nil && r.Body != http.NoBody && isUploadBody(route, r.Method)
	limited := upload && (s.minUploadRate > 0 || s.maxUploadTime > 0)
	if s.requestTimeout <= 0 && s.idleTimeout <= 0 && !limited {
		return
	}
	rc := http.NewResponseController(w)
	if !streams(route) {
		if s.requestTimeout > 0 {
			d := time.Now().Add(s.requestTimeout)
			_ = rc.SetReadDeadline(d)
			_ = rc.SetWriteDeadline(d)
		}
		return
	}
	if s.idleTimeout <= 0 && !limited {
		// No idle limit: clear what an earlier request on this connection set.
		_ = rc.SetWriteDeadline(time.Time{})
		return
	}
	now := time.Now()
	if s.idleTimeout > 0 {
		rw.idle, rw.rc = s.idleTimeout, rc
		_ = rc.SetWriteDeadline(now.Add(s.idleTimeout))
	}
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	b := &transferBody{ReadCloser: r.Body, rc: rc, idle: s.idleTimeout, windowStart: now}
	if limited {
		b.minRate, b.window = s.minUploadRate, s.rateWindow
		if b.window <= 0 {
			b.window = DefaultTransferRateWindow
		}
		if s.maxUploadTime > 0 {
			b.end = now.Add(s.maxUploadTime)
		}
	}
	b.extend(now)
	r.Body = b
}

// DefaultTransferRateWindow is the window over which an upload body's
// minimum rate is judged when none is set.
const DefaultTransferRateWindow = time.Minute

// transferBody keeps a request body's deadlines: the read deadline moves
// with every read (a client that stops sending for idle is cut off, one
// that keeps sending is not), never past end (the body's total duration),
// and a body that delivers less than minRate per window is cut off too.
type transferBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	last time.Time // when the deadlines were last moved
	end  time.Time // zero: no total bound

	minRate     int64 // bytes per second; 0: none
	window      time.Duration
	windowStart time.Time
	windowBytes int64
}

// ErrUploadTooSlow cuts an upload body under the minimum rate. It is a
// deadline error: the client is too slow, the registry is fine.
var ErrUploadTooSlow = fmt.Errorf("upload body under the minimum transfer rate: %w", os.ErrDeadlineExceeded)

func (b *transferBody) Read(p []byte) (int, error) {
	now := time.Now()
	if b.minRate > 0 && now.Sub(b.windowStart) >= b.window {
		if b.windowBytes < b.minRate*int64(b.window/time.Second) {
			if cb, ok := b.ReadCloser.(*countingBody); ok {
				cb.err.CompareAndSwap(nil, &ErrUploadTooSlow) // the body's own error, for clientBodyError
			}
			return 0, ErrUploadTooSlow
		}
		b.windowStart, b.windowBytes = now, 0
	}
	// Re-arming costs a timer update; do it at most every idle/8.
	if b.idle > 0 && now.Sub(b.last) > b.idle/8 {
		b.extend(now)
	}
	n, err := b.ReadCloser.Read(p)
	b.windowBytes += int64(n)
	return n, err
}

// extend moves the read deadline to now+idle, capped at end, and keeps
// the write side alive for the answer that follows the body.
func (b *transferBody) extend(now time.Time) {
	b.last = now
	var read time.Time
	if b.idle > 0 {
		read = now.Add(b.idle)
		_ = b.rc.SetWriteDeadline(now.Add(2 * b.idle))
	}
	if !b.end.IsZero() && (read.IsZero() || b.end.Before(read)) {
		read = b.end
	}
	_ = b.rc.SetReadDeadline(read)
}

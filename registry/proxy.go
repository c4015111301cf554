package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/wharf-registry/wharf/internal/cache"
	"github.com/wharf-registry/wharf/oci"
)

// Upstream is a registry this one caches (a pull-through cache): the
// source of the repositories under a prefix. Package proxy implements it
// over HTTP; the core knows only this. Its errors are ErrNotFound when
// upstream has no such thing and an *UpstreamError when upstream failed.
type Upstream interface {
	// Head returns the digest a reference names upstream now (a HEAD,
	// which Docker Hub does not count against its pull limit).
	Head(ctx context.Context, repo string, ref oci.Reference) (digest.Digest, error)
	// Manifest fetches a manifest and its media type.
	Manifest(ctx context.Context, repo string, ref oci.Reference) (mediaType string, payload []byte, err error)
	// Blob opens a blob's bytes; size is -1 when upstream did not say.
	Blob(ctx context.Context, repo string, d digest.Digest) (rc io.ReadCloser, size int64, err error)
	// Name is what errors and logs call the upstream (its URL).
	Name() string
}

// UpstreamError is an upstream that failed: it answered with an error
// status (Status), or not at all (Status 0: unreachable, timed out).
type UpstreamError struct {
	Upstream   string
	Status     int
	RetryAfter time.Duration // what a 429 or 503 asked for, if it did
	// Paused: the request was not sent, because upstream asked the cache
	// to wait (Status is 429, RetryAfter what is left of the wait).
	Paused bool
	Err    error
}

func (e *UpstreamError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("upstream %s: %v", e.Upstream, e.Err)
	}
	return fmt.Sprintf("upstream %s: status %d: %v", e.Upstream, e.Status, e.Err)
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// ProxyRoute says where a local repository comes from.
type ProxyRoute struct {
	Upstream Upstream
	// Repo is the repository's name upstream (the local name without
	// the prefix; Docker Hub's one-word names with library/ in front).
	Repo string
	// TagTTL is how long a tag's digest is trusted before a HEAD
	// revalidates it.
	TagTTL time.Duration
}

// The pull-through cache's outcomes (Options.ProxyEvent).
const (
	ProxyHit         = "hit"         // a manifest served from the cache without asking upstream
	ProxyRevalidated = "revalidated" // a tag past tag_ttl that upstream confirmed (a HEAD)
	ProxyMiss        = "miss"        // a manifest or blob fetched from upstream
	ProxyStale       = "stale"       // a cached tag served because upstream failed
	ProxyCoalesced   = "coalesced"   // a request that shared another's upstream fetch
)

func (r *Registry) proxyEvent(e string) {
	if r.opts.ProxyEvent != nil {
		r.opts.ProxyEvent(e)
	}
}

// proxy is the pull-through cache's state in the core.
type proxy struct {
	route func(repo string) (ProxyRoute, bool)
	// checked is when each proxied tag was last confirmed upstream.
	checked *cache.Cache[refKey, time.Time]
	// flight makes concurrent misses of one manifest one upstream fetch
	// (within this process).
	flight singleflight.Group
	// fetches are the blob fetches in flight, by repository and digest.
	mu      sync.Mutex
	fetches map[string]*blobFetch
}

func newProxy(route func(string) (ProxyRoute, bool)) *proxy {
	if route == nil {
		return nil
	}
	return &proxy{
		route:   route,
		fetches: map[string]*blobFetch{},
		checked: cache.New(1<<20, func(k refKey, _ time.Time) int64 {
			return cache.Strings(k.repo, k.ref) + 24
		}),
	}
}

// cacheRoute returns the route of a proxied repository.
func (r *Registry) cacheRoute(repo string) (ProxyRoute, bool) {
	if r.proxy == nil {
		return ProxyRoute{}, false
	}
	return r.proxy.route(repo)
}

// writable refuses writes to a proxied repository: it holds what its
// upstream holds, nothing else.
func (r *Registry) writable(repo string) error {
	if rt, ok := r.cacheRoute(repo); ok {
		return oci.Errorf(oci.CodeDenied, "repository %s is a read-only pull-through cache of %s", repo, rt.Upstream.Name())
	}
	return nil
}

// proxyManifest answers a manifest GET of a proxied repository: by digest
// from the cache or fetched once; by tag from the cache while the tag is
// fresh, else revalidated with a HEAD. When upstream fails and a copy is
// cached, the copy is served (Stale set).
func (r *Registry) proxyManifest(ctx context.Context, repo string, rt ProxyRoute, ref oci.Reference) (ManifestRecord, error) {
	local, lerr := r.localManifest(ctx, repo, ref)
	if lerr != nil && !errors.Is(lerr, oci.ErrManifestUnknown) {
		return local, lerr
	}
	if ref.IsDigest() {
		if lerr == nil { // immutable: never revalidated
			r.proxyEvent(ProxyHit)
			return local, nil
		}
		r.proxyEvent(ProxyMiss)
		return r.fetchManifest(ctx, repo, rt, ref.Digest, "")
	}
	key := refKey{repo, ref.Tag}
	if lerr == nil {
		if at, ok := r.proxy.checked.Get(key); ok && r.now().Sub(at) < rt.TagTTL {
			r.proxyEvent(ProxyHit)
			return local, nil
		}
	}
	d, err := rt.Upstream.Head(ctx, rt.Repo, ref)
	if err != nil {
		if lerr == nil && !errors.Is(err, ErrNotFound) {
			level := slog.LevelWarn
			if isPaused(err) { // every pull while paused: not a line each
				level = slog.LevelDebug
			}
			r.log.Log(ctx, level, "pull-through cache: upstream failed, serving the cached tag", "repo", repo, "tag", ref.Tag, "err", err)
			r.proxyEvent(ProxyStale)
			local.Stale = true
			return local, nil
		}
		return ManifestRecord{}, r.upstreamError(err, oci.ErrManifestUnknown.WithDetail(map[string]string{"reference": ref.String()}))
	}
	if lerr == nil && local.Digest == d {
		r.proxyEvent(ProxyRevalidated)
		r.proxy.checked.Put(refKey{strings.Clone(repo), strings.Clone(ref.Tag)}, r.now())
		return local, nil
	}
	r.proxyEvent(ProxyMiss)
	rec, err := r.fetchManifest(ctx, repo, rt, d, ref.Tag)
	if err != nil {
		if lerr == nil {
			r.log.WarnContext(ctx, "pull-through cache: fetching the moved tag failed, serving the cached one", "repo", repo, "tag", ref.Tag, "err", err)
			r.proxyEvent(ProxyStale)
			local.Stale = true
			return local, nil
		}
		return rec, err
	}
	r.proxy.checked.Put(refKey{strings.Clone(repo), strings.Clone(ref.Tag)}, r.now())
	return rec, nil
}

// fetchManifest fetches the manifest d from upstream (unless a caller
// just did), verifies it and stores it, pointing tag at it when tag is
// set; once for all concurrent callers.
func (r *Registry) fetchManifest(ctx context.Context, repo string, rt ProxyRoute, d digest.Digest, tag string) (ManifestRecord, error) {
	v, err, shared := r.proxy.flight.Do("m\x00"+repo+"\x00"+d.String()+"\x00"+tag, func() (any, error) {
		ctx := context.WithoutCancel(ctx) // shared: one caller leaving must not fail the others
		var mt string
		var payload []byte
		if rec, err := r.localManifest(ctx, repo, oci.Reference{Digest: d}); err == nil {
			if tag == "" {
				return rec, nil // fetched by a flight that ended after our caller looked
			}
			mt, payload = rec.MediaType, rec.Payload
		} else if mt, payload, err = rt.Upstream.Manifest(ctx, rt.Repo, oci.Reference{Digest: d}); err != nil {
			return nil, r.upstreamError(err, oci.ErrManifestUnknown.WithDetail(map[string]string{"reference": d.String()}))
		}
		if int64(len(payload)) > r.opts.MaxManifestBytes {
			return nil, oci.Errorf(oci.CodeManifestInvalid, "upstream manifest %s exceeds the %d-byte limit", d, r.opts.MaxManifestBytes)
		}
		m, err := oci.ParseManifest(mt, payload, d.Algorithm())
		if err != nil {
			return nil, err
		}
		if m.Digest != d {
			return nil, r.corrupt(rt, "manifest", d, fmt.Errorf("arrived with digest %s", m.Digest))
		}
		nm := NewManifest{
			Record: ManifestRecord{Digest: m.Digest, MediaType: m.MediaType, Payload: payload,
				ArtifactType: m.ArtifactType, Annotations: m.Annotations},
			Blobs: uniqueDigests(m.Blobs()), Children: uniqueDigests(m.Manifests), Cached: true,
		}
		if m.Subject != nil {
			nm.Record.Subject = m.Subject.Digest
		}
		if tag != "" {
			nm.Tags = []string{tag}
		}
		if err := r.meta.PutManifest(ctx, repo, nm); err != nil {
			return nil, internal("cache manifest", err)
		}
		r.c.gens.bump(repo)
		return r.localManifest(ctx, repo, oci.Reference{Digest: d})
	})
	if shared {
		r.proxyEvent(ProxyCoalesced)
	}
	if err != nil {
		return ManifestRecord{}, err
	}
	return v.(ManifestRecord), nil
}

// fetchMissing fetches the blobs of a cached manifest that are not here
// yet (up to four at once) and returns the manifest's blobs again.
func (r *Registry) fetchMissing(ctx context.Context, repo string, rt ProxyRoute, m digest.Digest, blobs []oci.Descriptor, have []BlobInfo) ([]BlobInfo, error) {
	here := make(map[digest.Digest]bool, len(have))
	for _, b := range have {
		here[b.Digest] = true
	}
	// Not cancelled at the first failure: the answer comes once every
	// fetch it started has ended, so none is still running behind it.
	var g errgroup.Group
	g.SetLimit(4)
	for _, d := range uniqueDigests(blobs) {
		if !here[d] {
			g.Go(func() error { return r.fetchBlob(ctx, repo, rt, d) })
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	infos, err := r.meta.ManifestBlobs(ctx, repo, m)
	if err != nil {
		return nil, internal("manifest blobs", err)
	}
	return infos, nil
}

// upstreamError turns an Upstream's error into the client's answer:
// upstream's 404 is ours (notFound), a 429 stays a 429 with its
// Retry-After, anything else is a 502 (504 for a timeout) naming the
// upstream.
func (r *Registry) upstreamError(err error, notFound *oci.Error) error {
	if errors.Is(err, ErrNotFound) {
		return notFound
	}
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		return err
	}
	// The full error goes to the log; the client learns the upstream and
	// the status, never a URL or header of the upstream's.
	if isPaused(ue) { // one line per request would be a log storm
		r.log.Debug("pull-through cache: upstream asked to wait; not sent", "upstream", ue.Upstream, "wait", ue.RetryAfter)
	} else {
		r.log.Warn("pull-through cache: upstream failed", "upstream", ue.Upstream, "status", ue.Status, "err", ue.Err)
	}
	switch {
	case ue.Status == http.StatusTooManyRequests:
		e := oci.Errorf(oci.CodeTooManyRequests, "upstream %s is rate limiting; try again later", ue.Upstream)
		if ue.RetryAfter > 0 {
			e = e.WithDetail(map[string]int{"retryAfterSeconds": int((ue.RetryAfter + time.Second - 1) / time.Second)})
		}
		return &RetryError{Err: e, After: ue.RetryAfter}
	case errors.Is(ue.Err, context.DeadlineExceeded) || isTimeout(ue.Err):
		return oci.Errorf(oci.CodeUnavailable, "upstream %s timed out", ue.Upstream).WithStatus(http.StatusGatewayTimeout)
	case ue.Status == http.StatusUnauthorized || ue.Status == http.StatusForbidden:
		return oci.Errorf(oci.CodeUnavailable, "upstream %s refused the pull-through cache's credentials (status %d)", ue.Upstream, ue.Status).WithStatus(http.StatusBadGateway)
	case ue.Status == 0:
		return oci.Errorf(oci.CodeUnavailable, "upstream %s is unreachable", ue.Upstream).WithStatus(http.StatusBadGateway)
	default:
		return oci.Errorf(oci.CodeUnavailable, "upstream %s failed (status %d)", ue.Upstream, ue.Status).WithStatus(http.StatusBadGateway)
	}
}

// corrupt is the answer to upstream content that is not what its digest
// names: nothing was stored, and this fetch fails.
func (r *Registry) corrupt(rt ProxyRoute, what string, d digest.Digest, err error) error {
	r.log.Warn("pull-through cache: upstream sent corrupt content", "upstream", rt.Upstream.Name(), what, d, "err", err)
	return oci.Errorf(oci.CodeUnavailable, "upstream %s sent a %s that does not match its digest %s", rt.Upstream.Name(), what, d).WithStatus(http.StatusBadGateway)
}

// isPaused reports a request not sent because upstream asked to wait.
func isPaused(err error) bool {
	var ue *UpstreamError
	return errors.As(err, &ue) && ue.Paused
}

// isTimeout reports a network timeout (net.Error.Timeout) in err's chain.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// RetryError is an answer the client should retry after a while (the
// server sends Retry-After).
type RetryError struct {
	Err   *oci.Error
	After time.Duration
}

func (e *RetryError) Error() string             { return e.Err.Error() }
func (e *RetryError) Unwrap() error             { return e.Err }
func (e *RetryError) RetryAfter() time.Duration { return e.After }

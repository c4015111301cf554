// Package proxy is the pull-through cache's side facing the upstream
// registries: each Upstream fetches manifests and blobs over HTTP with
// go-containerregistry (which does the ping, Basic and the bearer-token
// dance with pull scopes, and keeps tokens per repository), and a Router
// maps local repositories under a prefix to their upstream. The caching
// rules (what is fresh, what is served when upstream fails) live in the
// registry core; this package only talks to upstream and says what went
// wrong in the core's words (registry.ErrNotFound, *registry.UpstreamError).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/cache"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Options configure one upstream.
type Options struct {
	// URL of the upstream registry (https://registry-1.docker.io); plain
	// http only when given so.
	URL string
	// Username and Password: Basic credentials, also used for the token
	// service's login; empty: anonymous.
	Username, Password string
	// Timeout bounds one request's wait for upstream's answer headers
	// (a blob's body may take longer; default 30 s).
	Timeout time.Duration
	// Transport is the HTTP transport (tests inject a fault proxy's);
	// nil: a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// UserAgent is sent upstream.
	UserAgent string
}

// Upstream is one upstream registry. Safe for concurrent use.
type Upstream struct {
	closeIdle func() // the transport's CloseIdleConnections, when it has one
	url       string
	reg       name.Registry
	hub       bool // Docker Hub: one-word names live under library/
	puller    *remote.Puller
	// blobs fetches blob bodies itself (go-containerregistry's layers do
	// not say their size before the body, which streaming to clients
	// needs); its authenticated transports are kept per repository.
	base       http.RoundTripper
	auth       authn.Authenticator
	transports *cache.Cache[string, http.RoundTripper]
	idle       time.Duration // a blob body's longest silence
	lim        limits
}

var _ registry.Upstream = (*Upstream)(nil)

// New returns an upstream. It does not contact it.
func New(o Options) (*Upstream, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("proxy: upstream url %q: want http(s)://host[:port]", o.URL)
	}
	var nopts []name.Option
	if u.Scheme == "http" {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, nopts...)
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream %s: %w", o.URL, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	rt := o.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = o.Timeout
		t.DialContext = (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext
		rt = t
	}
	var closeIdle func()
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		closeIdle = c.CloseIdleConnections
	}
	var auth authn.Authenticator = authn.Anonymous
	if o.Username != "" {
		auth = &authn.Basic{Username: o.Username, Password: o.Password}
	}
	if o.UserAgent == "" {
		o.UserAgent = "wharf-proxy"
	}
	u2 := &Upstream{closeIdle: closeIdle, url: u.Scheme + "://" + u.Host, reg: reg, auth: auth, idle: o.Timeout,
		transports: cache.New(1<<20, func(k string, _ http.RoundTripper) int64 { return cache.Strings(k) + 512 })}
	u2.base = &retryAfter{next: rt, lim: &u2.lim}
	p, err := remote.NewPuller(
		remote.WithAuth(auth),
		remote.WithTransport(u2.base),
		remote.WithUserAgent(o.UserAgent),
		// No retries here: the core decides what a failure means (serve
		// the cached copy, or tell the client when to come back), and
		// retrying a rate-limited upstream is the request storm to avoid.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
	)
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream %s: %w", o.URL, err)
	}
	u2.base = transport.NewUserAgent(u2.base, o.UserAgent)
	u2.puller = p
	h := strings.TrimPrefix(reg.RegistryStr(), "registry-1.")
	u2.hub = h == "docker.io" || h == "index.docker.io"
	return u2, nil
}

// Close closes the idle connections to the upstream (at shutdown: an
// upstream that is itself shutting down then waits for none of them).
func (u *Upstream) Close() {
	if u.closeIdle != nil {
		u.closeIdle()
	}
}

// Name implements registry.Upstream.
func (u *Upstream) Name() string { return u.url }

// repoRef is the upstream reference of repo and ref.
func (u *Upstream) repoRef(repo string, ref oci.Reference) (name.Reference, error) {
	if u.hub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	r := u.reg.Repo(repo)
	if ref.IsDigest() {
		return r.Digest(ref.Digest.String()), nil
	}
	return r.Tag(ref.Tag), nil
}

// Head implements registry.Upstream.
func (u *Upstream) Head(ctx context.Context, repo string, ref oci.Reference) (digest.Digest, error) {
	if err := u.paused(false); err != nil {
		return "", err
	}
	r, err := u.repoRef(repo, ref)
	if err != nil {
		return "", err
	}
	ctx, ra := withRetryAfter(ctx)
	d, err := u.puller.Head(ctx, r)
	if err != nil {
		return "", u.fail(err, ra)
	}
	return digest.Parse(d.Digest.String())
}

// Manifest implements registry.Upstream.
func (u *Upstream) Manifest(ctx context.Context, repo string, ref oci.Reference) (string, []byte, error) {
	if err := u.paused(true); err != nil {
		return "", nil, err
	}
	r, err := u.repoRef(repo, ref)
	if err != nil {
		return "", nil, err
	}
	ctx, ra := withRetryAfter(ctx)
	d, err := u.puller.Get(ctx, r)
	if err != nil {
		return "", nil, u.fail(err, ra)
	}
	return string(d.MediaType), d.Manifest, nil
}

// paused refuses a request an upstream's pause covers (see limits),
// without sending it.
func (u *Upstream) paused(manifestGet bool) error {
	if d := u.lim.wait(time.Now(), manifestGet); d > 0 {
		return &registry.UpstreamError{Upstream: u.url, Status: http.StatusTooManyRequests, RetryAfter: d, Paused: true, Err: errPaused}
	}
	return nil
}

// fail says what went wrong in the core's words.
func (u *Upstream) fail(err error, ra *retryHolder) error {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return fmt.Errorf("upstream %s: %w", u.url, registry.ErrNotFound)
		}
		return &registry.UpstreamError{Upstream: u.url, Status: te.StatusCode, RetryAfter: ra.after, Err: err}
	}
	return &registry.UpstreamError{Upstream: u.url, Err: err}
}

// retryHolder receives a 429's or 503's Retry-After: go-containerregistry
// keeps no response headers in its errors.
type retryHolder struct{ after time.Duration }

type retryKey struct{}

func withRetryAfter(ctx context.Context) (context.Context, *retryHolder) {
	h := &retryHolder{}
	return context.WithValue(ctx, retryKey{}, h), h
}

// retryAfter records Retry-After into the request's holder and every
// answer's rate-limit headers into the upstream's limits.
type retryAfter struct {
	next http.RoundTripper
	lim  *limits
}

func (t *retryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	now := time.Now()
	t.lim.observe(resp, now)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if h, ok := req.Context().Value(retryKey{}).(*retryHolder); ok {
			h.after = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
	}
	return resp, err
}

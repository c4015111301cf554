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
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

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
	p, err := remote.NewPuller(
		remote.WithAuth(auth),
		remote.WithTransport(&retryAfter{next: rt}),
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
	h := strings.TrimPrefix(reg.RegistryStr(), "registry-1.")
	return &Upstream{closeIdle: closeIdle, url: u.Scheme + "://" + u.Host, reg: reg, puller: p,
		hub: h == "docker.io" || h == "index.docker.io"}, nil
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

// Blob implements registry.Upstream. The stream verifies the digest as
// it is read (go-containerregistry fails its last Read on a mismatch).
func (u *Upstream) Blob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	r, err := u.repoRef(repo, oci.Reference{Digest: d})
	if err != nil {
		return nil, 0, err
	}
	ctx, ra := withRetryAfter(ctx)
	l, err := u.puller.Layer(ctx, r.(name.Digest))
	if err != nil {
		return nil, 0, u.fail(err, ra)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, 0, u.fail(err, ra)
	}
	return &failReader{rc: rc, u: u, ra: ra}, -1, nil
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

// failReader turns a blob stream's errors (a cut connection) into the
// core's.
type failReader struct {
	rc io.ReadCloser
	u  *Upstream
	ra *retryHolder
}

func (f *failReader) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case strings.HasPrefix(err.Error(), "error verifying"):
		// go-containerregistry's digest (or size) check at the end of
		// the stream; its error type is internal, its words are not.
		err = fmt.Errorf("upstream %s: %w: %v", f.u.url, oci.ErrDigestInvalid, err)
	default:
		err = f.u.fail(err, f.ra)
	}
	return n, err
}

func (f *failReader) Close() error { return f.rc.Close() }

// retryHolder receives a 429's or 503's Retry-After: go-containerregistry
// keeps no response headers in its errors.
type retryHolder struct{ after time.Duration }

type retryKey struct{}

func withRetryAfter(ctx context.Context) (context.Context, *retryHolder) {
	h := &retryHolder{}
	return context.WithValue(ctx, retryKey{}, h), h
}

// retryAfter records Retry-After into the request's holder.
type retryAfter struct{ next http.RoundTripper }

func (t *retryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if h, ok := req.Context().Value(retryKey{}).(*retryHolder); ok {
			h.after = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return resp, err
}

// parseRetryAfter reads seconds or an HTTP date (RFC 9110); 0 when absent
// or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

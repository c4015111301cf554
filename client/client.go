// Package client pulls, exports and copies whole images from OCI
// registries. It uses Wharf's batch endpoint (every blob URL of an image
// in one request) when a registry offers it and the standard API
// otherwise, and it never trusts a stale URL: a URL is re-resolved before
// a download starts when it would expire before the download could end,
// and when storage refuses it as expired, the download continues from the
// byte already received.
package client

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/wharf-registry/wharf/batch"
)

// ErrURLExpired is returned when storage refused a download URL as expired
// and the client could not (or, with DisableReResolve, may not) get a
// fresh one.
var ErrURLExpired = errors.New("download URL expired")

// Options configure a Client. The zero value works.
type Options struct {
	// Keychain finds credentials per registry; nil is
	// authn.DefaultKeychain, which reads one file: the Docker config if
	// one exists, else $REGISTRY_AUTH_FILE, else podman's auth.json.
	Keychain authn.Keychain
	// Insecure talks plain HTTP to every registry (loopback and private
	// addresses use HTTP anyway).
	Insecure bool
	// Jobs is how many blobs download at once (default 4).
	Jobs int
	// Expiry is the URL lifetime asked of the batch endpoint (default 15m,
	// clamped to 60s..7d).
	Expiry time.Duration
	// MarginFloor is the least time a URL must still be valid for when a
	// download starts (default 30s); the margin grows with the blob's size
	// divided by the throughput seen so far.
	MarginFloor time.Duration
	// DisableReResolve resolves every URL once, up front, and never again:
	// the behaviour of a naive client, kept for tests and comparisons.
	DisableReResolve bool
	// DisableBatch never uses the batch endpoint.
	DisableBatch bool
	// Retries bounds retries of one request on 5xx, 429 and network
	// errors (default 5).
	Retries int
	// Transport is the HTTP transport (default http.DefaultTransport clone).
	Transport http.RoundTripper
	// Now is the clock used for URL expiry (default time.Now).
	Now func() time.Time
	// Progress receives download progress; nil reports nothing.
	Progress Progress
	// Fsync flushes every blob to disk before it is renamed into place.
	// Without it a crash may leave a torn blob, which the next pull finds
	// (kept blobs are digest-checked before reuse) and downloads again.
	Fsync bool
	// Logf receives verbose messages; nil discards them.
	Logf func(format string, args ...any)
	// UserAgent is sent with every request.
	UserAgent string
}

// Client runs pulls, exports and copies. It is safe for concurrent use.
type Client struct {
	opts  Options
	http  *http.Client
	mu    sync.Mutex
	regs  map[string]*registry
	stats counters
	// throughput is an estimate of bytes per second of downloads, kept as
	// an exponentially weighted average (float64 bits).
	tput atomic.Uint64
}

type counters struct {
	bytes, blobs, skipped, mounted, requests, reresolutions, retries, resumed atomic.Int64
}

// Stats are a client's totals so far.
type Stats struct {
	// Bytes downloaded (each byte counted once, resumed bytes not again).
	Bytes int64 `json:"bytes"`
	// Blobs downloaded and verified.
	Blobs int64 `json:"blobsDownloaded"`
	// Skipped blobs: already present (output or destination).
	Skipped int64 `json:"skipped"`
	// Mounted blobs (cross-repository mount on copy).
	Mounted int64 `json:"mounted"`
	// Requests sent to registries' /v2/ API (not to signed storage URLs).
	Requests int64 `json:"requests"`
	// ReResolutions of download URLs (before expiry or after a refusal).
	ReResolutions int64 `json:"reResolutions"`
	// Retries after 5xx, 429 or network errors.
	Retries int64 `json:"retries"`
	// Resumed downloads (continued with Range).
	Resumed int64 `json:"resumed"`
}

// New returns a Client.
func New(opts Options) *Client {
	if opts.Jobs <= 0 {
		opts.Jobs = 4
	}
	if opts.Expiry <= 0 {
		opts.Expiry = 15 * time.Minute
	}
	opts.Expiry = batch.ClampExpiry(opts.Expiry)
	if opts.MarginFloor <= 0 {
		opts.MarginFloor = 30 * time.Second
	}
	if opts.Retries <= 0 {
		opts.Retries = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "wharf-client"
	}
	base := opts.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(opts.Jobs*2, 8)
		base = t
	}
	c := &Client{opts: opts, regs: map[string]*registry{}}
	c.http = newHTTPClient(base, c.count)
	return c
}

// Stats returns the totals so far.
func (c *Client) Stats() Stats {
	return Stats{
		Bytes: c.stats.bytes.Load(), Blobs: c.stats.blobs.Load(), Skipped: c.stats.skipped.Load(),
		Mounted: c.stats.mounted.Load(), Requests: c.stats.requests.Load(),
		ReResolutions: c.stats.reresolutions.Load(), Retries: c.stats.retries.Load(), Resumed: c.stats.resumed.Load(),
	}
}

// count counts requests to a known registry's /v2/ API.
func (c *Client) count(req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		return
	}
	c.mu.Lock()
	_, ok := c.regs[req.URL.Host]
	c.mu.Unlock()
	if ok {
		c.stats.requests.Add(1)
	}
}

func (c *Client) keychain() authn.Keychain {
	if c.opts.Keychain != nil {
		return c.opts.Keychain
	}
	return authn.DefaultKeychain
}

func (c *Client) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ParseReference parses an image reference ("host/repo:tag",
// "host/repo@sha256:...").
func (c *Client) ParseReference(s string) (name.Reference, error) {
	var o []name.Option
	if c.opts.Insecure {
		o = append(o, name.Insecure)
	}
	return name.ParseReference(s, o...)
}

// StaticKeychain returns a keychain with one username and password for
// every registry (--user / --password-stdin).
func StaticKeychain(user, password string) authn.Keychain {
	return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: password})}
}

type staticKeychain struct{ a authn.Authenticator }

func (s staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return s.a, nil }

// observe feeds a finished transfer into the throughput estimate.
func (c *Client) observe(n int64, d time.Duration) {
	if n <= 0 || d <= 0 {
		return
	}
	rate := float64(n) / d.Seconds()
	for {
		old := c.tput.Load()
		prev := math.Float64frombits(old)
		next := rate
		if prev > 0 {
			next = 0.7*prev + 0.3*rate
		}
		if c.tput.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// margin is how long a URL must still live for a download of n bytes to
// start on it: twice the expected transfer time, never below the floor.
func (c *Client) margin(n int64) time.Duration {
	m := c.opts.MarginFloor
	if rate := math.Float64frombits(c.tput.Load()); rate > 0 {
		m = max(m, time.Duration(2*float64(n)/rate*float64(time.Second)))
	}
	return m
}

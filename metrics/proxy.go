package metrics

import (
	"context"
	"errors"
	"io"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// ProxyEvent counts one pull-through cache outcome (registry.Options.ProxyEvent:
// hit, revalidated, miss, stale, coalesced).
func (m *Metrics) ProxyEvent(event string) { m.proxyEvents.WithLabelValues(event).Inc() }

// Upstream counts an upstream's requests by operation and outcome, and
// the blob bytes it sends.
func (m *Metrics) Upstream(inner registry.Upstream) registry.Upstream {
	return &upstream{inner: inner, m: m, bytes: m.upstreamBytes.WithLabelValues(inner.Name())}
}

type upstream struct {
	inner registry.Upstream
	m     *Metrics
	bytes prometheus.Counter
}

func (u *upstream) Name() string { return u.inner.Name() }

func (u *upstream) count(op string, err error) {
	u.m.upstreamReqs.WithLabelValues(u.inner.Name(), op, upstreamOutcome(err)).Inc()
}

// upstreamOutcome is ok, not_found, paused (not sent), the upstream's
// status class or code (429, 5xx, 4xx), or error (no answer).
func upstreamOutcome(err error) string {
	var ue *registry.UpstreamError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, registry.ErrNotFound):
		return "not_found"
	case errors.As(err, &ue) && ue.Paused:
		return "paused" // not sent: upstream asked the cache to wait
	case errors.As(err, &ue) && ue.Status == 429:
		return "429"
	case errors.As(err, &ue) && ue.Status >= 500:
		return "5xx"
	case errors.As(err, &ue) && ue.Status >= 400:
		return strconv.Itoa(ue.Status/100) + "xx"
	}
	return "error"
}

func (u *upstream) Head(ctx context.Context, repo string, ref oci.Reference) (digest.Digest, error) {
	d, err := u.inner.Head(ctx, repo, ref)
	u.count("head", err)
	return d, err
}

func (u *upstream) Manifest(ctx context.Context, repo string, ref oci.Reference) (string, []byte, error) {
	mt, b, err := u.inner.Manifest(ctx, repo, ref)
	u.count("manifest", err)
	return mt, b, err
}

func (u *upstream) Blob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	rc, n, err := u.inner.Blob(ctx, repo, d)
	u.count("blob", err)
	if err != nil {
		return rc, n, err
	}
	return &countingReader{ReadCloser: rc, c: u.bytes}, n, nil
}

type countingReader struct {
	io.ReadCloser
	c prometheus.Counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.c.Add(float64(n))
	}
	return n, err
}

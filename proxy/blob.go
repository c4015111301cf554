package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Blob implements registry.Upstream: one GET, whose Content-Length is the
// size (the core streams the body to its clients while it stores it, and
// verifies the digest itself). A body that goes silent for the upstream's
// timeout fails as a timeout: a trickling upstream cannot hold a fetch,
// and the clients waiting on it, forever.
func (u *Upstream) Blob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	if err := u.paused(false); err != nil {
		return nil, 0, err
	}
	r, err := u.repoRef(repo, oci.Reference{Digest: d})
	if err != nil {
		return nil, 0, err
	}
	rt, err := u.repoTransport(ctx, r.Context())
	if err != nil {
		return nil, 0, u.fail(err, &retryHolder{})
	}
	ctx, cancel := context.WithCancel(ctx)
	ctx, ra := withRetryAfter(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/v2/%s/blobs/%s", u.url, r.Context().RepositoryStr(), d), nil)
	if err != nil {
		cancel()
		return nil, 0, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req) // follows redirects to a CDN
	if err != nil {
		cancel()
		return nil, 0, u.fail(err, ra)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		cancel()
		return nil, 0, u.fail(err, ra)
	}
	ir := &idleReader{body: resp.Body, idle: u.idle, cancel: cancel, u: u, ra: ra}
	ir.timer = time.AfterFunc(time.Hour, func() { ir.expired.Store(true); cancel() })
	ir.timer.Stop()
	return ir, resp.ContentLength, nil
}

// repoTransport is an authenticated transport for pulls from repo (the
// ping and the token dance once per repository, not per blob; bearer
// transports refresh their token on a 401).
func (u *Upstream) repoTransport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	key := repo.RepositoryStr()
	if rt, ok := u.transports.Get(key); ok {
		return rt, nil
	}
	rt, err := transport.NewWithContext(ctx, u.reg, u.auth, u.base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	u.transports.Put(key, rt)
	return rt, nil
}

// idleReader is a blob body that fails when a Read waits longer than
// idle, and turns its errors (a cut connection) into the core's.
type idleReader struct {
	body    io.ReadCloser
	idle    time.Duration
	timer   *time.Timer
	expired atomic.Bool
	cancel  context.CancelFunc
	u       *Upstream
	ra      *retryHolder
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.idle) // only while a Read waits: a slow consumer is not a silent upstream
	n, err := r.body.Read(p)
	r.timer.Stop()
	switch {
	case err == nil || err == io.EOF:
	case r.expired.Load():
		err = &registry.UpstreamError{Upstream: r.u.url,
			Err: fmt.Errorf("blob body: nothing for %v: %w", r.idle, context.DeadlineExceeded)}
	default:
		err = r.u.fail(err, r.ra)
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	err := r.body.Close()
	r.cancel()
	return err
}

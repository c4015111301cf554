package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Signer counts and times the signatures a registry.Signer makes (the
// registry's signature cache sits in front of it, so each call is a cache
// miss). The result implements registry.RotatingSigner exactly when
// inner does.
func (m *Metrics) Signer(inner registry.Signer) registry.Signer {
	s := &signer{inner: inner, m: m}
	if r, ok := inner.(registry.RotatingSigner); ok {
		return &rotatingSigner{signer: s, r: r}
	}
	return s
}

type signer struct {
	inner registry.Signer
	m     *Metrics
}

func (s *signer) SignBlob(ctx context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	start := time.Now()
	u, err := s.inner.SignBlob(ctx, b, expires)
	s.m.signDur.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.signs.WithLabelValues("error").Inc()
	} else {
		s.m.signs.WithLabelValues("ok").Inc()
	}
	return u, err
}

// Unwrap returns the instrumented signer.
func (s *signer) Unwrap() registry.Signer { return s.inner }

type rotatingSigner struct {
	*signer
	r registry.RotatingSigner
}

func (s *rotatingSigner) SigningGeneration(ctx context.Context) (string, error) {
	return s.r.SigningGeneration(ctx)
}

// Authorizer counts an auth.Authorizer's decisions by result.
func (m *Metrics) Authorizer(inner auth.Authorizer) auth.Authorizer {
	return &authorizer{inner: inner,
		ok: m.authz.WithLabelValues("success"), unauthorized: m.authz.WithLabelValues("unauthorized"),
		denied: m.authz.WithLabelValues("denied"), other: m.authz.WithLabelValues("error")}
}

type authorizer struct {
	inner                           auth.Authorizer
	ok, unauthorized, denied, other interface{ Inc() }
}

func (a *authorizer) Authorize(r *http.Request, scope auth.Scope) (auth.Identity, error) {
	id, err := a.inner.Authorize(r, scope)
	switch {
	case err == nil:
		a.ok.Inc()
	default:
		switch oci.AsError(err).Code {
		case oci.CodeUnauthorized:
			a.unauthorized.Inc()
		case oci.CodeDenied:
			a.denied.Inc()
		default:
			a.other.Inc()
		}
	}
	return id, err
}

func (a *authorizer) Permits(id auth.Identity, repo string, act auth.Action) bool {
	return a.inner.Permits(id, repo, act)
}

func (a *authorizer) Lists(id auth.Identity, repo string) bool {
	return a.inner.Lists(id, repo)
}

func (a *authorizer) Challenge(r *http.Request, scope auth.Scope) string {
	return a.inner.Challenge(r, scope)
}

// Unwrap returns the instrumented authorizer.
func (a *authorizer) Unwrap() auth.Authorizer { return a.inner }

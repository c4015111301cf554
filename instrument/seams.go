package instrument

import (
	"context"
	"net/http"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/registry"
)

// The seams an Op belongs to.
const (
	SeamMetadata = "metadata"
	SeamBlob     = "blob"
	SeamSigner   = "signer"
	SeamAuth     = "auth"
)

var (
	// OpSignBlob is one signature (the registry's signature cache sits in
	// front of the signer, so each is a cache miss).
	OpSignBlob = newOp(SeamSigner, "sign_blob")
	// OpAuthorize is one authorization decision; a refusal is an answer
	// (Expected), not a failure.
	OpAuthorize = newOp(SeamAuth, "authorize")
)

// Signer reports every signature of inner to o. The result implements
// registry.RotatingSigner exactly when inner does; Unwrap returns inner.
func Signer(inner registry.Signer, o Observer) registry.Signer {
	s := &signer{inner: inner, o: o}
	if r, ok := inner.(registry.RotatingSigner); ok {
		return &rotatingSigner{signer: s, r: r}
	}
	return s
}

type signer struct {
	inner registry.Signer
	o     Observer
}

func (s *signer) SignBlob(ctx context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	return observe(ctx, s.o, OpSignBlob, func(ctx context.Context) (registry.SignedURL, error) { return s.inner.SignBlob(ctx, b, expires) })
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

// Authorizer reports every Authorize of inner to o (the other methods are
// cheap lookups, forwarded unobserved); Unwrap returns inner.
func Authorizer(inner auth.Authorizer, o Observer) auth.Authorizer {
	return &authorizer{inner: inner, o: o}
}

type authorizer struct {
	inner auth.Authorizer
	o     Observer
}

func (a *authorizer) Authorize(r *http.Request, scope auth.Scope) (auth.Identity, error) {
	ctx, done := a.o.Start(r.Context(), OpAuthorize)
	if ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	id, err := a.inner.Authorize(r, scope)
	done(err)
	return id, err
}

func (a *authorizer) Permits(id auth.Identity, repo string, act auth.Action) bool {
	return a.inner.Permits(id, repo, act)
}

func (a *authorizer) Lists(id auth.Identity, repo string) bool { return a.inner.Lists(id, repo) }

func (a *authorizer) Challenge(r *http.Request, scope auth.Scope) string {
	return a.inner.Challenge(r, scope)
}

// Unwrap returns the instrumented authorizer.
func (a *authorizer) Unwrap() auth.Authorizer { return a.inner }

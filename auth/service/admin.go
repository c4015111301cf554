package service

import (
	"errors"
	"net/http"
	"strings"

	"github.com/wharf-registry/wharf/oci"
)

// AdminOnly serves h only to the policy's admins, authenticated by Basic
// credentials (through the failed-login limits) or a verified client
// certificate: for /metrics on the main listener, which names
// repositories' traffic and the registry's internals. Bearer tokens are
// refused: a token's claim grants repositories and the catalog, not this.
// Others get 401 with a Basic challenge, a non-admin 403.
func (s *Service) AdminOnly(h http.Handler) http.Handler {
	challenge := `Basic realm="` + s.o.Service + `", charset="UTF-8"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			p   principal
			err error = errUnauthorized
		)
		if a := r.Header.Get("Authorization"); a == "" || len(a) > 6 && strings.EqualFold(a[:6], "basic ") {
			p, err = s.authenticate(r)
		}
		var rl *RateLimitedError
		switch {
		case errors.As(err, &rl):
			setRetryAfter(w, rl.After)
			tokenError(w, r, rl.Err, "")
		case err != nil || p.id.Anonymous():
			tokenError(w, r, errUnauthorized, challenge)
		case !s.policy.Load().IsAdmin(p.id.Subject):
			tokenError(w, r, oci.Errorf(oci.CodeDenied, "admins only"), "")
		default:
			h.ServeHTTP(w, r)
		}
	})
}

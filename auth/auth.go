// Package auth is the seam between the HTTP server and whoever decides
// who a caller is and what it may do. The server asks one question per
// request (Authorize) and one per repository it lists (Lists) or mounts
// from (Permits); implementations cache whatever makes those cheap.
package auth

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Action is something a caller does to a repository.
type Action string

// The actions of the token specification's scopes.
const (
	Pull   Action = "pull"
	Push   Action = "push"
	Delete Action = "delete"
)

// Scope is what a request needs: actions on one repository, or on the
// registry itself (Repo empty: the base endpoint and the catalog).
type Scope struct {
	Repo    string
	Actions []Action
}

// Identity is an authenticated caller; the zero value is anonymous.
type Identity struct {
	// Subject is the user name ("" for anonymous).
	Subject string
	// Token is set for a caller that presented a bearer token: Access
	// (its "access" claim) is then all it may do, whatever the policy
	// would give its subject, so that a token scoped to one repository
	// cannot reach another through a mount or the catalog.
	Token  bool
	Access []Access
	// Issuer is the issuer of the caller's token when it is an external
	// one; "" for callers known locally (users, client certificates and
	// tokens of the built-in token service, whose subject is a policy user).
	Issuer string
}

// Access is one entry of a token's "access" claim: actions on a
// resource. Type "repository" names a repository; type "registry" with
// name "catalog" is the catalog.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Covers reports whether the access list grants action a on repo ("*"
// among the actions grants every action).
func Covers(list []Access, repo string, a Action) bool {
	for _, e := range list {
		if e.Type != "repository" || e.Name != repo {
			continue
		}
		for _, x := range e.Actions {
			if x == string(a) || x == "*" {
				return true
			}
		}
	}
	return false
}

// CoversCatalog reports whether the access list grants the catalog
// ("registry:catalog:*").
func CoversCatalog(list []Access) bool {
	for _, e := range list {
		if e.Type == "registry" && e.Name == "catalog" && slices.Contains(e.Actions, "*") {
			return true
		}
	}
	return false
}

// Anonymous reports whether no credentials were presented.
func (i Identity) Anonymous() bool { return i.Subject == "" }

// Authorizer decides requests.
type Authorizer interface {
	// Authorize returns the caller's identity if it may act on scope, or an
	// error: an *oci.Error with code UNAUTHORIZED (the server sends the
	// challenge from Challenge) or DENIED.
	Authorize(r *http.Request, scope Scope) (Identity, error)
	// Permits reports whether id may do a on repo, for choosing a
	// repository to mount a blob from.
	Permits(id Identity, repo string, a Action) bool
	// Lists reports whether the catalog may name repo to id.
	Lists(id Identity, repo string) bool
	// Challenge returns the WWW-Authenticate value for a 401 on scope,
	// or "" when the authorizer never challenges.
	Challenge(r *http.Request, scope Scope) string
}

// AllowAll lets everyone do everything: the default of an embedded
// registry on loopback, and what the conformance suite runs against.
type AllowAll struct{}

// Authorize implements Authorizer.
func (AllowAll) Authorize(*http.Request, Scope) (Identity, error) { return Identity{}, nil }

// Permits implements Authorizer.
func (AllowAll) Permits(Identity, string, Action) bool { return true }

// Lists implements Authorizer.
func (AllowAll) Lists(Identity, string) bool { return true }

// Challenge implements Authorizer.
func (AllowAll) Challenge(*http.Request, Scope) string { return "" }

type proxiedKey struct{}

// ViaProxy records that the request came through a proxy the server
// trusts, and the caller's address that proxy gave (X-Forwarded-For).
// Per-address limits (failed logins) key on it, or every client behind a
// load balancer would share the balancer's bucket; headers only such a
// proxy may set (X-Forwarded-Proto) are believed only then.
func ViaProxy(ctx context.Context, clientAddr string) context.Context {
	return context.WithValue(ctx, proxiedKey{}, clientAddr)
}

// ClientAddr is the caller's address: the one a trusted proxy gave, else
// the host of r.RemoteAddr (X-Forwarded-For is never read here: anyone can
// send it).
func ClientAddr(r *http.Request) string {
	if a, ok := r.Context().Value(proxiedKey{}).(string); ok && a != "" {
		return a
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ViaTrustedProxy reports whether the server recorded r as coming through
// a trusted proxy (ViaProxy).
func ViaTrustedProxy(r *http.Request) bool {
	_, ok := r.Context().Value(proxiedKey{}).(string)
	return ok
}

// OverTLS reports whether the caller's connection is encrypted: TLS to
// this server, or X-Forwarded-Proto: https from a trusted proxy that
// terminated it.
func OverTLS(r *http.Request) bool {
	return r.TLS != nil || ViaTrustedProxy(r) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

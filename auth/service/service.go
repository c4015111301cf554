// Package service is Wharf's authentication service: the auth.Authorizer
// of the "basic" and "token" modes (htpasswd users, client certificates,
// bearer tokens of the built-in token service or of external issuers,
// evaluated against an auth.Policy) and the token endpoint of the Docker
// registry token specification.
//
// Decisions, for a request needing actions A on repository R:
//
//   - no credentials: allowed when the policy gives anonymous callers A on
//     R, else 401 UNAUTHORIZED with a challenge;
//   - credentials that do not verify (wrong password, unknown user, bad,
//     expired or tampered token): 401 UNAUTHORIZED, the same answer in
//     every case;
//   - Basic credentials or a client certificate of a user the policy does
//     not give A on R: 403 DENIED;
//   - a valid token whose access claim does not cover A on R: 401 with a
//     challenge naming the scope needed (error="insufficient_scope"), as
//     the token specification asks, so the client fetches a token for it —
//     except when the token is one of ours and the policy would not grant
//     the scope to its subject anyway: then 403 DENIED, since a new token
//     cannot help;
//   - too many failed logins from the client address, or for a user being
//     guessed from an address that failed for it lately: 429
//     TOOMANYREQUESTS with Retry-After, before any password check (other
//     addresses still log in as that user).
//
// A token grants its access claim and nothing more, wherever the server
// asks (Authorize, a mount's source, the catalog): the policy decides
// what the token service puts in a token, never what a token may do.
//
// The base endpoint and the catalog need an authenticated caller (not an
// anonymous token); the catalog lists what the caller may pull (all of it
// for an admin), and to a token without "registry:catalog:*" only the
// repositories its claim covers. The signed-download route needs no credentials at all:
// its signature is the credential. Authorization happens before the registry is asked
// anything, so a caller who may not pull a repository cannot tell whether
// it exists.
package service

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/auth/token"
	"github.com/wharf-registry/wharf/oci"
)

// Mode is how callers authenticate on /v2/.
type Mode string

// The modes besides "none" (auth.AllowAll).
const (
	// ModeBasic: Basic credentials (or a client certificate) on every
	// request; challenges are Basic.
	ModeBasic Mode = "basic"
	// ModeToken: bearer tokens; challenges send clients to the token
	// service. Basic credentials are accepted on /v2/ as well.
	ModeToken Mode = "token"
)

// Options configure a Service.
type Options struct {
	Mode Mode
	// Htpasswd is the users file; it is re-read when it changes.
	Htpasswd string
	Policy   *auth.Policy
	// Issuer is the built-in token service; nil serves no tokens.
	Issuer *token.Issuer
	// Verifier accepts tokens (of Issuer and of external issuers).
	Verifier *token.Verifier
	// Service is the token "service" (audience) named in challenges.
	Service string
	// Realm is the token endpoint named in challenges; empty is
	// PublicURL + "/token", or the request's own base URL + "/token".
	Realm     string
	PublicURL string
	// TokenTTL is the lifetime of issued tokens (default 5m).
	TokenTTL time.Duration
	// BasicCacheTTL is how long verified Basic credentials are remembered
	// (default 1m). CacheMaxBytes bounds the memory of each credential
	// cache, verified tokens and Basic credentials (default
	// DefaultCacheMaxBytes); CacheSize bounds the failed-login buckets
	// (default 10000).
	BasicCacheTTL time.Duration
	CacheMaxBytes int64
	CacheSize     int
	// FailedLoginsPerMinute and FailedLoginsBurst shape the failed-login
	// buckets of each client address and each user (default 10 and 20:
	// one containerd pull with a wrong password fails ~5 logins, as it
	// retries the 401, so four such pulls fit in the burst).
	FailedLoginsPerMinute float64
	FailedLoginsBurst     int
	Logger                *slog.Logger
	Now                   func() time.Time
}

// Service authenticates and authorizes requests. It is an auth.Authorizer.
type Service struct {
	o        Options
	log      *slog.Logger
	now      func() time.Time
	users    atomic.Pointer[htpasswd.File]
	reload   sync.Mutex
	fileStat atomic.Pointer[fileStamp]
	nextStat atomic.Int64 // unix nanos of the next htpasswd stat
	basic    *credCache
	bearer   *credCache
	limiter  *loginLimiter
	policy   atomic.Pointer[auth.Policy] // swapped whole by SetPolicy
	warnedAt atomic.Int64
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// principal is what verifying a credential established.
type principal struct {
	id auth.Identity // id.Token: authenticated by a token, whose access claim binds
	// own: the token is the built-in issuer's.
	own bool
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Mode != ModeBasic && o.Mode != ModeToken {
		return nil, errors.New("auth service: mode must be basic or token")
	}
	if o.Mode == ModeToken && o.Verifier == nil {
		return nil, errors.New("auth service: token mode needs a token verifier")
	}
	if o.Policy == nil {
		p, err := auth.CompilePolicy(auth.PolicySpec{})
		if err != nil {
			return nil, err
		}
		o.Policy = p
	}
	if o.Service == "" {
		o.Service = "wharf"
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 5 * time.Minute
	}
	if o.BasicCacheTTL <= 0 {
		o.BasicCacheTTL = time.Minute
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.CacheMaxBytes <= 0 {
		o.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if o.FailedLoginsPerMinute <= 0 {
		o.FailedLoginsPerMinute = 10
	}
	if o.FailedLoginsBurst <= 0 {
		o.FailedLoginsBurst = 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{
		o: o, log: o.Logger, now: o.Now,
		basic:   newCredCache(o.CacheMaxBytes),
		bearer:  newCredCache(o.CacheMaxBytes),
		limiter: newLoginLimiter(o.FailedLoginsPerMinute, o.FailedLoginsBurst, o.CacheSize),
	}
	s.policy.Store(o.Policy)
	s.users.Store(&htpasswd.File{})
	if o.Htpasswd != "" {
		if err := s.loadUsers(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// loadUsers (re)reads the htpasswd file. A file that fails to parse on
// reload keeps the users loaded before (and logs why).
func (s *Service) loadUsers() error {
	st, err := os.Stat(s.o.Htpasswd)
	stamp := &fileStamp{}
	if err == nil {
		stamp = &fileStamp{mod: st.ModTime(), size: st.Size()}
	}
	f, err := htpasswd.Load(s.o.Htpasswd)
	if err != nil {
		return err
	}
	if err := f.PrepareDummies(); err != nil {
		return err
	}
	s.users.Store(f)
	s.fileStat.Store(stamp)
	s.basic.clear()
	return nil
}

// maybeReload stats the htpasswd file at most every two seconds and
// re-reads it when it changed, so `wharf user add/remove` take effect on
// a running registry.
func (s *Service) maybeReload(now time.Time) {
	if s.o.Htpasswd == "" || now.UnixNano() < s.nextStat.Load() {
		return
	}
	if !s.reload.TryLock() {
		return
	}
	defer s.reload.Unlock()
	s.nextStat.Store(now.Add(2 * time.Second).UnixNano())
	st, err := os.Stat(s.o.Htpasswd)
	stamp := &fileStamp{}
	if err == nil {
		stamp = &fileStamp{mod: st.ModTime(), size: st.Size()}
	}
	if old := s.fileStat.Load(); old != nil && *old == *stamp {
		return
	}
	if err := s.loadUsers(); err != nil {
		s.log.Error("reloading htpasswd: keeping the users loaded before", "file", s.o.Htpasswd, "err", err)
		s.fileStat.Store(stamp)
		return
	}
	s.log.Info("reloaded htpasswd", "file", s.o.Htpasswd)
}

// Errors sent to clients: one answer for every failed authentication.
var (
	errUnauthorized = oci.Errorf(oci.CodeUnauthorized, "authentication required")
	errDenied       = oci.Errorf(oci.CodeDenied, "requested access to the resource is denied")
)

// RateLimitedError is a 429 TOOMANYREQUESTS; the server sends
// Retry-After from RetryAfter.
type RateLimitedError struct {
	Err   *oci.Error
	After time.Duration
}

func (e *RateLimitedError) Error() string { return e.Err.Error() }

// RetryAfter is how long the client should wait.
func (e *RateLimitedError) RetryAfter() time.Duration { return e.After }

// Unwrap gives the *oci.Error to errors.As.
func (e *RateLimitedError) Unwrap() error { return e.Err }

func rateLimited(d time.Duration) error {
	return &RateLimitedError{Err: oci.Errorf(oci.CodeTooManyRequests, "too many failed logins; retry later"), After: d}
}

// authenticate establishes who the caller is from the request's
// credentials: Basic, Bearer (token mode), a verified client certificate,
// or none (anonymous).
func (s *Service) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
			if cn := r.TLS.PeerCertificates[0].Subject.CommonName; cn != "" {
				return principal{id: auth.Identity{Subject: cn}}, nil
			}
		}
		return principal{}, nil
	case len(h) > 6 && strings.EqualFold(h[:6], "basic "):
		return s.checkBasic(r, h[6:])
	case len(h) > 7 && strings.EqualFold(h[:7], "bearer ") && s.o.Verifier != nil:
		return s.checkBearer(strings.TrimSpace(h[7:]))
	}
	return principal{}, errUnauthorized
}

// checkBasic verifies base64 "user:password" against the htpasswd file,
// through the cache and the failed-login limiter.
func (s *Service) checkBasic(r *http.Request, b64 string) (principal, error) {
	now := s.now()
	s.maybeReload(now)
	key := cacheKey("basic", b64)
	if p, ok := s.basic.get(key, now); ok {
		// A limited address is refused even the remembered right
		// password, or it would tell a right guess (200) from the rest
		// (429) while the user's credentials are cached.
		if d := s.limiter.wait(now, auth.ClientAddr(r), p.id.Subject); d > 0 {
			return principal{}, rateLimited(d)
		}
		return p, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return principal{}, errUnauthorized
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return principal{}, errUnauthorized
	}
	if err := s.login(r, user, pass, now); err != nil {
		return principal{}, err
	}
	p := principal{id: auth.Identity{Subject: user}}
	s.basic.put(key, p, now.Add(s.o.BasicCacheTTL), now)
	return p, nil
}

// login checks a password, rate-limiting failures per client address and
// per user (loginLimiter: a user being guessed is not locked out of
// addresses that are not guessing). The password is never logged.
func (s *Service) login(r *http.Request, user, pass string, now time.Time) error {
	ip := auth.ClientAddr(r)
	if d := s.limiter.wait(now, ip, user); d > 0 {
		s.log.WarnContext(r.Context(), "login refused: too many failed logins", "user", user, "remote", ip, "retry_after", d.Round(time.Second))
		return rateLimited(d)
	}
	if !s.users.Load().Verify(user, pass) {
		s.limiter.fail(now, ip, user)
		s.log.WarnContext(r.Context(), "failed login", "user", user, "remote", ip)
		return errUnauthorized
	}
	s.warnPlainHTTP(r, now)
	return nil
}

// warnPlainHTTP logs, at most once a minute, that a password was accepted
// over plain HTTP on a non-loopback address.
func (s *Service) warnPlainHTTP(r *http.Request, now time.Time) {
	if auth.OverTLS(r) { // X-Forwarded-Proto only from a trusted proxy
		return
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
			return
		}
	} else {
		return
	}
	last := s.warnedAt.Load()
	if now.UnixNano()-last < int64(time.Minute) || !s.warnedAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	s.log.WarnContext(r.Context(), "!!! CREDENTIALS ACCEPTED OVER PLAIN HTTP on a non-loopback address: passwords and tokens travel in clear text; configure tls.cert/tls.key (or terminate TLS in a proxy listed in http.trusted_proxies that sets X-Forwarded-Proto) !!!",
		"remote", auth.ClientAddr(r))
}

// checkBearer verifies a token through the cache.
func (s *Service) checkBearer(raw string) (principal, error) {
	now := s.now()
	key := cacheKey("bearer", raw)
	if p, ok := s.bearer.get(key, now); ok {
		return p, nil
	}
	c, err := s.o.Verifier.Verify(raw)
	if err != nil {
		return principal{}, errUnauthorized
	}
	p := principal{id: auth.Identity{Subject: c.Subject, Token: true, Access: c.Access}}
	if s.o.Issuer != nil && c.Issuer == s.o.Issuer.Name() {
		p.own = true
	} else {
		p.id.Issuer = c.Issuer
	}
	exp := c.ExpiresAt.Add(token.Leeway)
	s.bearer.put(key, p, exp, now)
	return p, nil
}

// Authorize implements auth.Authorizer.
func (s *Service) Authorize(r *http.Request, scope auth.Scope) (auth.Identity, error) {
	p, err := s.authenticate(r)
	if err != nil {
		return auth.Identity{}, err
	}
	if scope.Repo == "" {
		// Base endpoint and catalog: any authenticated caller (an
		// anonymous token is not enough: `docker login` must fail with
		// wrong credentials, and clients never send one here).
		if p.id.Anonymous() {
			return auth.Identity{}, errUnauthorized
		}
		return p.id, nil
	}
	for _, a := range scope.Actions {
		if p.id.Token {
			if auth.Covers(p.id.Access, scope.Repo, a) {
				continue
			}
			if p.own && !p.id.Anonymous() && !s.policy.Load().Allows(p.id.Subject, scope.Repo, a) {
				return auth.Identity{}, errDenied
			}
			return auth.Identity{}, errUnauthorized
		}
		if !s.policy.Load().Allows(p.id.Subject, scope.Repo, a) {
			if p.id.Anonymous() {
				return auth.Identity{}, errUnauthorized
			}
			return auth.Identity{}, errDenied
		}
	}
	return p.id, nil
}

// SetPolicy replaces the policy for every request from now on (a config
// reload): identities are cached, decisions are not. Tokens already
// issued keep what they grant until they expire (auth.token.ttl).
func (s *Service) SetPolicy(p *auth.Policy) { s.policy.Store(p) }

// Permits implements auth.Authorizer: a token's access claim alone for a
// caller with a token (the policy may give its subject more, but the
// token was scoped to less), the policy for everyone else.
func (s *Service) Permits(id auth.Identity, repo string, a auth.Action) bool {
	if id.Token {
		return auth.Covers(id.Access, repo, a)
	}
	return s.policy.Load().Allows(id.Subject, repo, a)
}

// Lists implements auth.Authorizer. The catalog names what the caller
// may pull; to a token, only what its claim covers, unless it grants
// "registry:catalog:*": then what the policy lets its subject pull for a
// token of ours (the token service grants the catalog to every
// authenticated user), everything for an external issuer's (the issuer
// is the policy).
func (s *Service) Lists(id auth.Identity, repo string) bool {
	if id.Token {
		switch {
		case !auth.CoversCatalog(id.Access):
			return auth.Covers(id.Access, repo, auth.Pull)
		case id.Issuer != "":
			return true
		}
	}
	return s.policy.Load().Allows(id.Subject, repo, auth.Pull)
}

// Challenge implements auth.Authorizer.
func (s *Service) Challenge(r *http.Request, scope auth.Scope) string {
	if s.o.Mode == ModeBasic {
		return `Basic realm="` + s.o.Service + `", charset="UTF-8"`
	}
	var b strings.Builder
	b.WriteString(`Bearer realm="`)
	b.WriteString(s.realm(r))
	b.WriteString(`",service="`)
	b.WriteString(s.o.Service)
	b.WriteString(`"`)
	switch {
	case scope.Repo != "":
		b.WriteString(`,scope="repository:`)
		b.WriteString(scope.Repo)
		b.WriteString(":")
		for i, a := range scope.Actions {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(string(a))
		}
		if from := mountSource(r, scope.Repo); from != "" {
			// A token covers only what it names: ask for the source too.
			b.WriteString(" repository:")
			b.WriteString(from)
			b.WriteString(":pull")
		}
		b.WriteString(`"`)
	case strings.HasSuffix(r.URL.Path, "/_catalog"):
		b.WriteString(`,scope="registry:catalog:*"`)
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		if _, err := s.checkBearer(strings.TrimSpace(h[7:])); err == nil {
			b.WriteString(`,error="insufficient_scope"`)
		} else {
			b.WriteString(`,error="invalid_token"`)
		}
	}
	return b.String()
}

// mountSource is the valid repository a cross-repository mount request
// (POST .../blobs/uploads/?mount=&from=) takes its blob from, other than
// repo; "" for any other request.
func mountSource(r *http.Request, repo string) string {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
		return ""
	}
	q := r.URL.Query()
	from := q.Get("from")
	if q.Get("mount") == "" || from == "" || from == repo || oci.ValidateName(from) != nil {
		return ""
	}
	return from
}

func (s *Service) realm(r *http.Request) string {
	if s.o.Realm != "" {
		return s.o.Realm
	}
	base := strings.TrimRight(s.o.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if auth.OverTLS(r) { // X-Forwarded-Proto only from a trusted proxy
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + "/token"
}

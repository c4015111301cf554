package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// registry talks to one registry's /v2/ API: authentication (Basic or the
// bearer-token dance, done lazily on the first 401 so an anonymous pull
// costs no extra request), retries with backoff, 429 Retry-After, and a
// redirect policy that never sends the registry's Authorization header to
// another host.
type registry struct {
	c      *Client
	reg    name.Registry
	scheme string
	host   string // host[:port] as used in URLs
	auth   authn.Authenticator

	mu     sync.Mutex
	tokens map[string]string // scope set -> bearer token
	basic  string            // "Basic ..." once the registry asked for it
	// batch is whether the registry offers the batch endpoint:
	// 0 unknown, 1 yes, -1 no (detected once per registry).
	batch int
}

func (c *Client) registryFor(reg name.Registry) *registry {
	c.mu.Lock()
	defer c.mu.Unlock()
	host := reg.RegistryStr()
	if r, ok := c.regs[host]; ok {
		return r
	}
	r := &registry{c: c, reg: reg, scheme: reg.Scheme(), host: host, tokens: map[string]string{}}
	c.regs[host] = r
	return r
}

func (r *registry) url(path string) string { return r.scheme + "://" + r.host + path }

func (r *registry) authenticator(ctx context.Context) authn.Authenticator {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.auth == nil {
		a, err := r.c.keychain().Resolve(r.reg)
		if err != nil || a == nil {
			a = authn.Anonymous
		}
		r.auth = a
	}
	return r.auth
}

// anonymous reports whether the client has no credentials for r.
func (r *registry) anonymous(ctx context.Context) bool {
	cfg, err := r.authenticator(ctx).Authorization()
	return err == nil && cfg.Username == "" && cfg.Password == "" && cfg.Auth == "" &&
		cfg.IdentityToken == "" && cfg.RegistryToken == ""
}

// request is one registry request; body, when set, is called for every
// attempt so a request can be retried.
type request struct {
	method string
	path   string // "/v2/..." or an absolute URL on the registry (upload Location)
	header http.Header
	body   func() (io.ReadCloser, int64, error)
	scopes []string // e.g. "repository:a/b:pull"
	// noRetry returns 5xx responses to the caller instead of retrying.
	noRetry bool
}

// do sends a request to the registry with auth, retries and backoff. The
// response is returned for any status the caller must judge (2xx, 3xx
// not followed, 4xx other than 401/429, 501); other 5xx and network
// errors are retried up to Options.Retries times.
func (r *registry) do(ctx context.Context, q request) (*http.Response, error) {
	target := q.path
	if strings.HasPrefix(target, "/") {
		target = r.url(target)
	}
	authRetried := false
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if attempt > r.c.opts.Retries {
				return nil, lastErr
			}
		}
		req, err := http.NewRequestWithContext(ctx, q.method, target, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range q.header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", r.c.opts.UserAgent)
		if q.body != nil {
			rc, n, err := q.body()
			if err != nil {
				return nil, err
			}
			req.Body = rc
			req.ContentLength = n
		}
		if h := r.authHeader(q.scopes); h != "" && req.URL.Host == r.host {
			req.Header.Set("Authorization", h)
		}
		resp, err := r.c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			lastErr = err
			r.c.stats.retries.Add(1)
			if err := r.c.sleep(ctx, backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && !authRetried && resp.Request.URL.Host == r.host:
			challenge := resp.Header.Get("WWW-Authenticate")
			drain(resp)
			if err := r.authorize(ctx, challenge, q.scopes); err != nil {
				return nil, &authError{err}
			}
			authRetried = true
			attempt-- // the auth round trip is not a failure
			continue
		case resp.StatusCode == http.StatusTooManyRequests:
			wait := retryAfter(resp.Header.Get("Retry-After"), backoff(attempt))
			drain(resp)
			lastErr = fmt.Errorf("%s %s: 429 Too Many Requests", q.method, redact(target))
			r.c.stats.retries.Add(1)
			if err := r.c.sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented && !q.noRetry:
			// 501 is no passing failure: the caller judges it (no batch endpoint)
			body := readSome(resp)
			lastErr = fmt.Errorf("%s %s: %s: %s", q.method, redact(target), resp.Status, body)
			r.c.stats.retries.Add(1)
			if err := r.c.sleep(ctx, backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

func (r *registry) authHeader(scopes []string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tokens[strings.Join(scopes, " ")]; ok {
		return "Bearer " + t
	}
	return r.basic
}

// authorize answers a 401 challenge: Basic credentials, or a token from
// the realm the Bearer challenge names (the "token dance").
func (r *registry) authorize(ctx context.Context, challenge string, scopes []string) error {
	scheme, params := parseChallenge(challenge)
	cfg, err := r.authenticator(ctx).Authorization()
	if err != nil {
		return fmt.Errorf("credentials for %s: %w", r.host, err)
	}
	switch strings.ToLower(scheme) {
	case "basic":
		if cfg.Username == "" && cfg.Password == "" && cfg.Auth == "" {
			return fmt.Errorf("%s: authentication required (use --user/--password-stdin or docker login)", r.host)
		}
		r.mu.Lock()
		if cfg.Auth != "" {
			r.basic = "Basic " + cfg.Auth
		} else {
			r.basic = "Basic " + basicAuth(cfg.Username, cfg.Password)
		}
		r.mu.Unlock()
		return nil
	case "bearer":
		realm := params["realm"]
		if realm == "" {
			return fmt.Errorf("%s: bearer challenge without realm", r.host)
		}
		if cfg.RegistryToken != "" {
			r.mu.Lock()
			r.tokens[strings.Join(scopes, " ")] = cfg.RegistryToken
			r.mu.Unlock()
			return nil
		}
		u, err := url.Parse(realm)
		if err != nil {
			return fmt.Errorf("%s: bad token realm %q", r.host, realm)
		}
		v := u.Query()
		if s := params["service"]; s != "" {
			v.Set("service", s)
		}
		want := scopes
		if len(want) == 0 && params["scope"] != "" {
			want = strings.Split(params["scope"], " ")
		}
		for _, s := range want {
			v.Add("scope", s)
		}
		u.RawQuery = v.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", r.c.opts.UserAgent)
		if cfg.Username != "" || cfg.Password != "" {
			req.SetBasicAuth(cfg.Username, cfg.Password)
		} else if cfg.Auth != "" {
			req.Header.Set("Authorization", "Basic "+cfg.Auth)
		}
		resp, err := r.c.http.Do(req)
		if err != nil {
			return fmt.Errorf("token from %s: %w", redact(realm), err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && (cfg.Username != "" || cfg.Auth != "") {
			return fmt.Errorf("%s: login failed: token endpoint %s refused the credentials%s: %s: %s",
				r.host, redact(realm), userOf(cfg), resp.Status, readSome(resp))
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token from %s: %s: %s", redact(realm), resp.Status, readSome(resp))
		}
		var tok struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil {
			return fmt.Errorf("token from %s: %w", redact(realm), err)
		}
		t := tok.Token
		if t == "" {
			t = tok.AccessToken
		}
		if t == "" {
			return fmt.Errorf("token from %s: empty token", redact(realm))
		}
		r.mu.Lock()
		r.tokens[strings.Join(scopes, " ")] = t
		r.mu.Unlock()
		return nil
	}
	return fmt.Errorf("%s: 401 with unsupported challenge %q", r.host, challenge)
}

// authError is a 401 challenge the client could not answer (no or refused
// credentials).
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// userOf names the user of cfg for messages (never the password).
func userOf(cfg *authn.AuthConfig) string {
	u := cfg.Username
	if u == "" && cfg.Auth != "" {
		if b, err := base64.StdEncoding.DecodeString(cfg.Auth); err == nil {
			u, _, _ = strings.Cut(string(b), ":")
		}
	}
	if u == "" {
		return ""
	}
	return fmt.Sprintf(" of user %q", u)
}

// parseChallenge splits `Bearer realm="x",service="y"` into its scheme
// and parameters.
func parseChallenge(h string) (string, map[string]string) {
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	params := map[string]string{}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(after, `"`) {
			end := 1
			for end < len(after) && after[end] != '"' {
				if after[end] == '\\' {
					end++
				}
				end++
			}
			v = strings.ReplaceAll(after[1:min(end, len(after))], `\"`, `"`)
			rest = after[min(end+1, len(after)):]
		} else {
			v, rest, _ = strings.Cut(after, ",")
		}
		params[k] = strings.TrimSpace(v)
	}
	return scheme, params
}

func basicAuth(user, pass string) string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// newHTTPClient returns the client every request goes through. Its
// redirect policy drops Authorization on any hop to another host:port
// (Go drops it only when the host name changes to a non-subdomain, and
// never when only the port changes), and guard does the same below the
// client, so no code path can leak registry credentials to storage.
func newHTTPClient(base http.RoundTripper, count func(*http.Request)) *http.Client {
	return &http.Client{
		Transport: &guard{next: base, count: count},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
				req.Header.Del("Authorization")
			}
			return nil
		},
	}
}

// guard strips credentials from requests that leave their origin and
// counts requests to the registries' /v2/ API.
type guard struct {
	next  http.RoundTripper
	count func(*http.Request)
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Response != nil && req.Header.Get("Authorization") != "" {
		// a redirect hop: the header may only go back to the same origin
		orig := req.Response.Request
		for orig.Response != nil {
			orig = orig.Response.Request
		}
		if orig.URL.Host != req.URL.Host || orig.URL.Scheme != req.URL.Scheme {
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
		}
	}
	if g.count != nil {
		g.count(req)
	}
	return g.next.RoundTrip(req)
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 6)
	return min(d, 10*time.Second)
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped
// at a minute; def when absent or unreadable.
func retryAfter(h string, def time.Duration) time.Duration {
	if h == "" {
		return def
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, time.Minute)
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t), 0), time.Minute)
	}
	return def
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// readSome reads the start of an error body and closes it.
func readSome(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	drain(resp)
	return strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?"))))
}

// redact drops the query (signatures) from a URL for messages.
func redact(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?..."
	}
	return s
}

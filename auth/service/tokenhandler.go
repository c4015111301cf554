package service

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/oci"
)

// TokenPath is where the token endpoint is served.
const TokenPath = "/token"

// TokenHandler serves the token endpoint:
//
//   - GET /token?service=&scope=...&scope=... with Basic credentials, a
//     client certificate, or nothing (an anonymous token), as the Docker
//     registry token specification describes;
//   - POST /token with a form (grant_type=password, username, password,
//     scope, service), the OAuth2 password grant of the same
//     specification. Refresh tokens are not issued.
//
// The token grants what the policy allows of what was asked (the
// intersection; names that are not valid repository names are never
// granted). More than MaxScopes scopes answer 400. Failed logins answer 401 and are rate-limited (429).
func (s *Service) TokenHandler() http.Handler {
	return http.HandlerFunc(s.serveToken)
}

// MaxScopes bounds the scopes of one token request: a client asks for the
// few repositories of one operation (a copy's source and destination), and
// a token, its cache entry and every decision on it grow with its claim.
const MaxScopes = 32

// errTooManyScopes answers a token request with more than MaxScopes.
var errTooManyScopes = oci.Errorf(oci.CodeUnsupported, "at most %d scopes per token request", MaxScopes).WithStatus(http.StatusBadRequest)

type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
	Scope       string `json:"scope,omitempty"`
}

func (s *Service) serveToken(w http.ResponseWriter, r *http.Request) {
	if s.o.Issuer == nil {
		tokenError(w, r, oci.Errorf(oci.CodeUnsupported, "this registry issues no tokens").WithStatus(http.StatusNotFound), "")
		return
	}
	var (
		p      principal
		err    error
		scopes []string
		form   = r.Method == http.MethodPost
	)
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if svc := q.Get("service"); svc != "" && svc != s.o.Service {
			tokenError(w, r, oci.Errorf(oci.CodeDenied, "unknown service %q", svc).WithStatus(http.StatusBadRequest), "")
			return
		}
		for _, v := range q["scope"] {
			scopes = append(scopes, strings.Fields(v)...)
		}
		if len(scopes) > MaxScopes {
			tokenError(w, r, errTooManyScopes, "")
			return
		}
		if h := r.Header.Get("Authorization"); h != "" && !(len(h) > 6 && strings.EqualFold(h[:6], "basic ")) {
			err = errUnauthorized // a token for a token: not here
		} else {
			p, err = s.authenticate(r)
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request")
			return
		}
		if svc := r.PostForm.Get("service"); svc != "" && svc != s.o.Service {
			oauthError(w, http.StatusBadRequest, "invalid_request")
			return
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
		if len(scopes) > MaxScopes {
			oauthError(w, http.StatusBadRequest, "invalid_scope")
			return
		}
		user := r.PostForm.Get("username")
		if user == "" {
			oauthError(w, http.StatusBadRequest, "invalid_request")
			return
		}
		now := s.now()
		s.maybeReload(now)
		if err = s.login(r, user, r.PostForm.Get("password"), now); err == nil {
			p = principal{id: auth.Identity{Subject: user}}
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		tokenError(w, r, oci.Errorf(oci.CodeUnsupported, "%s is not supported on the token endpoint", r.Method), "")
		return
	}
	if err != nil {
		var rl *RateLimitedError
		switch {
		case errors.As(err, &rl):
			setRetryAfter(w, rl.After)
			tokenError(w, r, rl.Err, "")
		case form:
			oauthError(w, http.StatusUnauthorized, "invalid_grant")
		default:
			tokenError(w, r, oci.AsError(err), `Basic realm="`+s.o.Service+`", charset="UTF-8"`)
		}
		return
	}
	requested := make([]auth.Access, 0, len(scopes))
	for _, sc := range scopes {
		if a, ok := parseScope(sc); ok {
			requested = append(requested, a)
		}
	}
	granted := s.policy.Load().Grant(p.id.Subject, requested)
	tok, issued, err := s.o.Issuer.Issue(p.id.Subject, granted, s.o.TokenTTL)
	if err != nil {
		s.log.ErrorContext(r.Context(), "signing token", "err", err)
		tokenError(w, r, oci.NewError(oci.CodeUnknown), "")
		return
	}
	s.log.DebugContext(r.Context(), "token issued", "subject", p.id.Subject, "requested", scopes, "granted", len(granted))
	resp := tokenResponse{Token: tok, AccessToken: tok, ExpiresIn: int(s.o.TokenTTL / time.Second), IssuedAt: issued.UTC().Format(time.RFC3339)}
	if form {
		resp.Token = ""
		parts := make([]string, 0, len(granted))
		for _, g := range granted {
			parts = append(parts, g.Type+":"+g.Name+":"+strings.Join(g.Actions, ","))
		}
		resp.Scope = strings.Join(parts, " ")
	}
	b, _ := json.Marshal(resp)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	_, _ = w.Write(b)
}

// parseScope parses "type:name:actions". The name may hold colons
// (host:port/repo), so the type ends at the first and the actions start
// after the last; a resource class ("repository(plugin)") is dropped.
func parseScope(s string) (auth.Access, bool) {
	i, j := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
	if i <= 0 || j <= i+1 {
		return auth.Access{}, false
	}
	typ := s[:i]
	if k := strings.IndexByte(typ, '('); k > 0 && strings.HasSuffix(typ, ")") {
		typ = typ[:k]
	}
	var acts []string
	for _, a := range strings.Split(s[j+1:], ",") {
		if a = strings.TrimSpace(a); a != "" {
			acts = append(acts, a)
		}
	}
	if len(acts) == 0 {
		return auth.Access{}, false
	}
	return auth.Access{Type: typ, Name: s[i+1 : j], Actions: acts}, true
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
}

func tokenError(w http.ResponseWriter, r *http.Request, e *oci.Error, challenge string) {
	if challenge != "" && e.Code == oci.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]any{{"code": e.Code, "message": e.Message}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func oauthError(w http.ResponseWriter, status int, code string) {
	body, _ := json.Marshal(map[string]string{"error": code})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// withAuth logs the client in: with a Bearer challenge it fetches one token
// for pull and push on the repository from the realm (the token dance, once:
// tokens outlive a benchmark run); with a Basic challenge it sends the
// credentials. Every later request carries the header.
func (c *regClient) withAuth(ctx context.Context, user, password string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"), nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return nil // no auth needed
	}
	scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	var header string
	switch scheme {
	case "basic":
		req.SetBasicAuth(user, password)
		header = req.Header.Get("Authorization")
	case "bearer":
		q := url.Values{"service": {params["service"]}, "scope": {"repository:" + c.repo + ":pull,push"}}
		treq, _ := http.NewRequestWithContext(ctx, http.MethodGet, params["realm"]+"?"+q.Encode(), nil)
		treq.SetBasicAuth(user, password)
		tresp, err := c.hc.Do(treq)
		if err != nil {
			return err
		}
		defer tresp.Body.Close()
		var tok struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
		}
		if tresp.StatusCode != http.StatusOK || json.NewDecoder(tresp.Body).Decode(&tok) != nil {
			return fmt.Errorf("token endpoint %s: status %d", params["realm"], tresp.StatusCode)
		}
		t := tok.Token
		if t == "" {
			t = tok.AccessToken
		}
		header = "Bearer " + t
	default:
		return fmt.Errorf("unsupported challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
	c.hc.Transport = authTransport{next: c.hc.Transport, header: header, host: c.base.Host}
	return nil
}

// authTransport adds the login to requests for the registry's host only:
// a signed URL elsewhere carries its own credential.
type authTransport struct {
	next         http.RoundTripper
	header, host string
}

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == t.host && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", t.header)
	}
	return t.next.RoundTrip(r)
}

// parseChallenge reads `Scheme k="v",k2="v2"`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			params[strings.ToLower(k)] = strings.Trim(v, `"`)
		}
	}
	return strings.ToLower(scheme), params
}

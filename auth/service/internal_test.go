package service

import (
	"crypto"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/auth/token"
)

func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLoginLimiter(6, 3, 100) // one token per 10s, burst 3
	for i := range 3 {
		if d := l.wait(now, "a", "u"); d != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail(now, "a", "u")
	}
	d := l.wait(now, "a", "u")
	if d <= 9*time.Second || d > 10*time.Second {
		t.Errorf("wait = %v, want ~10s", d)
	}
	if l.wait(now, "a", "v") == 0 {
		t.Error("the guessing address may try another user")
	}
	if l.wait(now, "b", "v") != 0 {
		t.Error("other keys blocked")
	}
	// u is being guessed: an address that has not failed for it may try.
	if l.wait(now, "b", "u") != 0 {
		t.Error("the user is blocked from any address")
	}
	// One that failed for u while u is guessed may not, until u refills.
	l.fail(now, "c", "u")
	if d := l.wait(now, "c", "u"); d <= 0 || d > 10*time.Second {
		t.Errorf("an address that failed for a guessed user: wait %v, want up to 10s", d)
	}
	if l.wait(now, "c", "v") != 0 {
		t.Error("that address is blocked for other users")
	}
	if l.wait(now.Add(10*time.Second), "a", "x") != 0 {
		t.Error("not refilled after 10s")
	}
}

func TestLoginLimiterBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLoginLimiter(60, 5, 50)
	for i := range 10_000 {
		l.fail(now, fmt.Sprintf("%d", i), "u")
	}
	if n := l.size(); n > 50 {
		t.Errorf("%d buckets kept, max 50", n)
	}
}

func TestCacheBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	const budget = 64 << 10
	c := newCredCache(budget)
	// Tokens with large access claims: the bytes they hold are what counts.
	big := principal{id: auth.Identity{Access: make([]auth.Access, 100), Token: true}}
	for i := range big.id.Access {
		big.id.Access[i] = auth.Access{Type: "repository", Name: fmt.Sprintf("public/r%05d", i), Actions: []string{"pull"}}
	}
	for i := range 10_000 {
		c.put(cacheKey("k", fmt.Sprint(i)), big, now.Add(time.Minute), now)
	}
	if b := c.bytes(); b > budget {
		t.Errorf("%d bytes held, budget %d", b, budget)
	}
	k := cacheKey("k", "x")
	p := principal{id: auth.Identity{Subject: "u"}}
	c.put(k, p, now.Add(time.Minute), now)
	if v, ok := c.get(k, now); !ok || v.id.Subject != "u" {
		t.Error("fresh entry missing")
	}
	if _, ok := c.get(k, now.Add(time.Minute)); ok {
		t.Error("expired entry served")
	}
	if cacheKey("basic", "a") == cacheKey("bearer", "a") {
		t.Error("kinds share keys")
	}
}

// TestExpiredCredentialsLeaveMemory: an expired token's entry is dropped
// by itself, not kept until the cache fills (30 anonymous tokens with
// 10,000 scopes each used to stay after they expired).
func TestExpiredCredentialsLeaveMemory(t *testing.T) {
	c := newCredCache(16 << 20)
	now := time.Unix(1_000_000, 0) // the service's clock; the cache frees by the wall clock
	for i := range 30 {
		c.put(cacheKey("bearer", fmt.Sprint(i)), principal{id: auth.Identity{Subject: "u"}}, now.Add(50*time.Millisecond), now)
	}
	c.put(cacheKey("bearer", "live"), principal{}, now.Add(time.Hour), now)
	deadline := time.Now().Add(5 * time.Second)
	for c.len() > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.len(); n != 1 {
		t.Errorf("%d entries after expiry, want 1", n)
	}
}

func TestParseScope(t *testing.T) {
	for in, want := range map[string]string{
		"repository:team/app:pull,push":      "repository team/app [pull push]",
		"repository:localhost:5000/app:pull": "repository localhost:5000/app [pull]",
		"repository(plugin):team/app:pull":   "repository team/app [pull]",
		"registry:catalog:*":                 "registry catalog [*]",
		"repository:x:":                      "",
		"nonsense":                           "",
		"repository::pull":                   "",
	} {
		a, ok := parseScope(in)
		got := ""
		if ok {
			got = fmt.Sprint(a.Type, " ", a.Name, " ", a.Actions)
		}
		if got != want {
			t.Errorf("parseScope(%q) = %q, want %q", in, got, want)
		}
	}
}

// benchService is a token-mode service with one user.
func benchService(b *testing.B) (*Service, *token.Issuer) {
	dir := b.TempDir()
	f := &htpasswd.File{}
	if err := f.Set("writer", "pw", bcrypt.DefaultCost); err != nil {
		b.Fatal(err)
	}
	hp := filepath.Join(dir, "htpasswd")
	if err := f.Save(hp); err != nil {
		b.Fatal(err)
	}
	policy, err := auth.CompilePolicy(auth.PolicySpec{Rules: []auth.RuleSpec{{Users: []string{"writer"}, Repos: []string{"team/**"}, Actions: []string{"pull", "push"}}}})
	if err != nil {
		b.Fatal(err)
	}
	key, err := token.LoadOrCreateSigningKey(filepath.Join(dir, "k.pem"))
	if err != nil {
		b.Fatal(err)
	}
	iss, err := token.NewIssuer(key, "i", "s", nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{
		Mode: ModeToken, Htpasswd: hp, Policy: policy, Issuer: iss, Service: "s",
		Verifier: token.NewVerifier("s", nil, &token.KeySet{Issuer: "i", Keys: map[string]crypto.PublicKey{"k": key.Public()}}),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return s, iss
}

var benchScope = auth.Scope{Repo: "team/app", Actions: []auth.Action{auth.Pull}}

// benchAuthorize authorizes r once, to fill the cache, then measures
// authorizing it again from all procs.
func benchAuthorize(b *testing.B, s *Service, r *http.Request) {
	if _, err := s.Authorize(r, benchScope); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Authorize(r, benchScope); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The hot path: a request with a token verified before (cached).
func BenchmarkAuthorizeCachedToken(b *testing.B) {
	s, iss := benchService(b)
	tok, _, _ := iss.Issue("writer", []auth.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}, time.Hour)
	r := httptest.NewRequest("HEAD", "/v2/team/app/manifests/latest", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	benchAuthorize(b, s, r)
}

// Cached Basic credentials (bcrypt once per cache TTL).
func BenchmarkAuthorizeCachedBasic(b *testing.B) {
	s, _ := benchService(b)
	r := httptest.NewRequest("HEAD", "/v2/team/app/manifests/latest", nil)
	r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("writer:pw")))
	benchAuthorize(b, s, r)
}

// What the cache saves: a signature check per request.
func BenchmarkAuthorizeUncachedToken(b *testing.B) {
	s, iss := benchService(b)
	tok, _, _ := iss.Issue("writer", []auth.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}, time.Hour)
	for b.Loop() {
		s.bearer.clear()
		if _, err := s.o.Verifier.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnknownUsersCostWhatUsersCost: the service compares an unknown
// user's password against a hash of its users' cost, recomputed when the
// htpasswd file is reloaded (it was always bcrypt's default, 10).
func TestUnknownUsersCostWhatUsersCost(t *testing.T) {
	hp := filepath.Join(t.TempDir(), "htpasswd")
	write := func(cost int) {
		f := &htpasswd.File{}
		if err := f.Set("alice", "pw", cost); err != nil {
			t.Fatal(err)
		}
		if err := f.Save(hp); err != nil {
			t.Fatal(err)
		}
	}
	write(bcrypt.MinCost + 1)
	now := time.Now()
	s, err := New(Options{Mode: ModeBasic, Htpasswd: hp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.users.Load().Cost("mallory"); got != bcrypt.MinCost+1 {
		t.Errorf("unknown user's cost = %d, want the users' %d", got, bcrypt.MinCost+1)
	}
	write(bcrypt.MinCost + 2)
	now = now.Add(3 * time.Second) // the file is stat'ed every 2s
	s.maybeReload(now)
	if got := s.users.Load().Cost("mallory"); got != bcrypt.MinCost+2 {
		t.Errorf("after reload: unknown user's cost = %d, want %d", got, bcrypt.MinCost+2)
	}
}

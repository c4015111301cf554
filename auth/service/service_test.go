package service_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/auth/token"
	"github.com/wharf-registry/wharf/internal/fakeclock"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/server"
)

// ---- fixture ----

var users = map[string]string{"reader": "reader-pw", "writer": "writer-pw", "admin": "admin-pw"}

var policySpec = auth.PolicySpec{
	Admins:        []string{"admin"},
	AnonymousPull: []string{"public/**"},
	Rules: []auth.RuleSpec{
		{Users: []string{"reader"}, Repos: []string{"team/**"}, Actions: []string{"pull"}},
		{Users: []string{"writer"}, Repos: []string{"team/**"}, Actions: []string{"pull", "push"}},
	},
}

type fixture struct {
	reg   *wharftest.Registry
	svc   *service.Service
	clock *fakeclock.Clock
	logs  *wharftest.LogBuffer
	mode  service.Mode
	// htpasswd is the users file.
	htpasswd string
	ext      *ecdsa.PrivateKey // external issuer's key
}

const extIssuer = "https://idp.example"

type fixtureOpts struct {
	burst int
	// defaultLimits keeps the service's default failed-login limits.
	defaultLimits bool
	// trustLoopback makes the server trust X-Forwarded-For from
	// 127.0.0.0/8, as behind a load balancer.
	trustLoopback bool
	// requestIDs turns on X-Request-Id (and request_id in log lines).
	requestIDs bool
}

func newFixture(t *testing.T, mode service.Mode, fo ...fixtureOpts) *fixture {
	t.Helper()
	dir := t.TempDir()
	hp := wharftest.WriteHtpasswd(t, dir, users)
	policy, err := auth.CompilePolicy(policySpec)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{clock: fakeclock.New(), logs: &wharftest.LogBuffer{}, mode: mode, htpasswd: hp}
	o := service.Options{
		Mode: mode, Htpasswd: hp, Policy: policy, Service: "wharf-test",
		// Wrapped as `wharf serve` wraps its logger: request_id is added
		// to lines logged with a request's context.
		Logger: slog.New(server.ContextHandler(slog.NewTextHandler(fx.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		Now:    fx.clock.Now, FailedLoginsBurst: 1000, FailedLoginsPerMinute: 1000,
	}
	if len(fo) > 0 && fo[0].burst > 0 {
		o.FailedLoginsBurst, o.FailedLoginsPerMinute = fo[0].burst, 1
	}
	if len(fo) > 0 && fo[0].defaultLimits {
		o.FailedLoginsBurst, o.FailedLoginsPerMinute = 0, 0
	}
	if mode == service.ModeToken {
		key, err := token.LoadOrCreateSigningKey(filepath.Join(dir, "token-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		o.Issuer, err = token.NewIssuer(key, "wharf-test-issuer", "wharf-test", fx.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		fx.ext, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		o.Verifier = token.NewVerifier("wharf-test", fx.clock.Now,
			&token.KeySet{Issuer: "wharf-test-issuer", Keys: map[string]crypto.PublicKey{"k": key.Public()}},
			&token.KeySet{Issuer: extIssuer, Keys: map[string]crypto.PublicKey{"ext": &fx.ext.PublicKey}})
	}
	fx.svc, err = service.New(o)
	if err != nil {
		t.Fatal(err)
	}
	wo := wharftest.Options{Auth: fx.svc}
	if len(fo) > 0 {
		o := fo[0]
		wo.Server = func(so *server.Options) {
			if o.trustLoopback {
				so.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			}
			so.RequestIDs = o.requestIDs
		}
	}
	if mode == service.ModeToken {
		wo.Handlers = map[string]http.Handler{service.TokenPath: fx.svc.TokenHandler()}
	}
	fx.reg = wharftest.Start(t, wo)
	return fx
}

func (fx *fixture) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(fx.reg.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func keychain(user string) authn.Authenticator {
	switch user {
	case "":
		return authn.Anonymous
	case "wrong":
		return &authn.Basic{Username: "writer", Password: "not-the-password"}
	}
	return authn.FromConfig(authn.AuthConfig{Username: user, Password: users[user]})
}

func (fx *fixture) push(t *testing.T, user, ref string) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(fx.ref(t, ref), img, remote.WithAuth(keychain(user)), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s as %q: %v", ref, user, err)
	}
	return img
}

// ---- a client doing the token dance by hand ----

type result struct {
	status int
	body   []byte
	header http.Header
}

// roundTrip sends req and reads the whole answer.
func roundTrip(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, b := testhttp.Do(t, nil, req)
	return result{resp.StatusCode, b, resp.Header}
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// do sends a request as user ("" anonymous, "wrong" a wrong password):
// in basic mode with Basic credentials up front; in token mode without,
// then, on a Bearer challenge, with a token fetched from the realm for the
// challenged scope, as docker, containerd and go-containerregistry do.
func (fx *fixture) do(t *testing.T, user, method, path string) result {
	t.Helper()
	var basic string
	switch user {
	case "":
	case "wrong":
		basic = "Basic " + base64.StdEncoding.EncodeToString([]byte("writer:not-the-password"))
	default:
		basic = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+users[user]))
	}
	target := path
	if !strings.HasPrefix(path, "http") {
		target = fx.reg.URL + path
	}
	send := func(authz string) result {
		req, err := http.NewRequestWithContext(t.Context(), method, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		return roundTrip(t, req)
	}
	if fx.mode == service.ModeBasic || strings.Contains(path, "/_wharf/") {
		return send(basic)
	}
	r := send("")
	ch := r.header.Get("WWW-Authenticate")
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(ch, "Bearer ") {
		return r
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(ch, -1) {
		params[m[1]] = m[2]
	}
	q := url.Values{"service": {params["service"]}}
	if params["scope"] != "" {
		q.Set("scope", params["scope"])
	}
	tr := func() result {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, params["realm"]+"?"+q.Encode(), nil)
		if basic != "" {
			req.Header.Set("Authorization", basic)
		}
		return roundTrip(t, req)
	}()
	if tr.status != http.StatusOK {
		return tr
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(tr.body, &tok); err != nil {
		t.Fatal(err)
	}
	return send("Bearer " + tok.Token)
}

// ---- the matrix ----

func TestAuthMatrix(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode)
			img := fx.push(t, "admin", "team/app:v1")
			fx.push(t, "admin", "public/app:v1")
			fx.push(t, "admin", "secret/app:v1")

			// A signed URL, handed out to the admin by the batch endpoint.
			r := fx.do(t, "admin", http.MethodGet, "/v2/team/app/manifests/v1/blobs")
			if r.status != http.StatusOK {
				t.Fatalf("batch as admin: %d %s", r.status, r.body)
			}
			var batch struct {
				Blobs []struct{ DownloadURL string }
			}
			if err := json.Unmarshal(r.body, &batch); err != nil || len(batch.Blobs) == 0 {
				t.Fatalf("batch body: %v %s", err, r.body)
			}
			signed := batch.Blobs[0].DownloadURL
			_ = img

			missing := "sha256:" + strings.Repeat("0", 64)
			ops := []struct {
				name, method, path string
			}{
				{"pull", http.MethodGet, "/v2/team/app/manifests/v1"},
				{"push", http.MethodPost, "/v2/team/app/blobs/uploads/"},
				{"delete", http.MethodDelete, "/v2/team/app/manifests/" + missing},
				{"catalog", http.MethodGet, "/v2/_catalog"},
				{"batch", http.MethodGet, "/v2/team/app/manifests/v1/blobs"},
				{"signed", http.MethodGet, signed},
			}
			// The same in both modes, by design (see the package doc).
			want := map[string][]int{
				"":       {401, 401, 401, 401, 401, 200},
				"wrong":  {401, 401, 401, 401, 401, 200},
				"reader": {200, 403, 403, 200, 200, 200},
				"writer": {200, 202, 403, 200, 200, 200},
				"admin":  {200, 202, 404, 200, 200, 200},
			}
			for _, who := range []string{"", "wrong", "reader", "writer", "admin"} {
				for i, op := range ops {
					got := fx.do(t, who, op.method, op.path)
					if got.status != want[who][i] {
						t.Errorf("%s as %q: status %d, want %d (%s)", op.name, who, got.status, want[who][i], got.body)
					}
					if got.status == 401 && mode == service.ModeBasic && !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Basic ") {
						t.Errorf("%s as %q: 401 without Basic challenge", op.name, who)
					}
				}
			}
			// Anonymous pull where the policy says so, and nowhere else.
			if r := fx.do(t, "", http.MethodGet, "/v2/public/app/manifests/v1"); r.status != 200 {
				t.Errorf("anonymous pull of public/app: %d", r.status)
			}
			if r := fx.do(t, "", http.MethodPost, "/v2/public/app/blobs/uploads/"); r.status != 401 {
				t.Errorf("anonymous push to public/app: %d", r.status)
			}
			// Tampered signed URL: 403 whoever asks.
			if r := fx.do(t, "admin", http.MethodGet, strings.Replace(signed, "sig=", "sig=A", 1)); r.status != 403 {
				t.Errorf("tampered signed URL: %d", r.status)
			}
			// The catalog lists what the caller may pull.
			for who, repos := range map[string][]string{
				"reader": {"public/app", "team/app"},
				"admin":  {"public/app", "secret/app", "team/app"},
			} {
				r := fx.do(t, who, http.MethodGet, "/v2/_catalog")
				var c struct{ Repositories []string }
				_ = json.Unmarshal(r.body, &c)
				slices.Sort(c.Repositories)
				if !slices.Equal(c.Repositories, repos) {
					t.Errorf("catalog as %s = %v, want %v", who, c.Repositories, repos)
				}
			}
			// Existence is not revealed: same answer for an existing and a
			// missing repository the caller may not read.
			for _, who := range []string{"", "wrong", "reader"} {
				a := fx.do(t, who, http.MethodGet, "/v2/secret/app/manifests/v1")
				b := fx.do(t, who, http.MethodGet, "/v2/secret/nothing/manifests/v1")
				c := fx.do(t, who, http.MethodGet, "/v2/secret/app/manifests/v1/blobs")
				d := fx.do(t, who, http.MethodGet, "/v2/secret/nothing/manifests/v1/blobs")
				if a.status != b.status || !bytes.Equal(a.body, b.body) || c.status != d.status || !bytes.Equal(c.body, d.body) || a.status < 401 || a.status > 403 {
					t.Errorf("as %q: existing %d %s vs missing %d %s", who, a.status, a.body, b.status, b.body)
				}
			}
			if strings.Contains(fx.logs.String(), "not-the-password") {
				t.Error("a password reached the logs")
			}
		})
	}
}

// ---- real clients: go-containerregistry's remote and authn ----

func TestGGCRTokenDance(t *testing.T) {
	fx := newFixture(t, service.ModeToken)
	img := fx.push(t, "writer", "team/app:v1")
	fx.push(t, "admin", "public/base:v1")
	ctx := remote.WithContext(t.Context())

	// reader pulls
	got, err := remote.Image(fx.ref(t, "team/app:v1"), remote.WithAuth(keychain("reader")), ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := must(got.Digest()), must(img.Digest()); d1 != d2 {
		t.Errorf("pulled %s, pushed %s", d1, d2)
	}
	if _, err := got.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	// reader may not push: 403 DENIED
	rimg, _ := random.Image(100, 1)
	err = remote.Write(fx.ref(t, "team/app:v2"), rimg, remote.WithAuth(keychain("reader")), ctx)
	expectStatus(t, "reader push", err, http.StatusForbidden)
	// wrong password: 401
	_, err = remote.Image(fx.ref(t, "team/app:v1"), remote.WithAuth(keychain("wrong")), ctx)
	expectStatus(t, "wrong password pull", err, http.StatusUnauthorized)
	// anonymous: public yes, team no
	if _, err := remote.Image(fx.ref(t, "public/base:v1"), remote.WithAuth(authn.Anonymous), ctx); err != nil {
		t.Errorf("anonymous pull of public/base: %v", err)
	}
	_, err = remote.Image(fx.ref(t, "team/app:v1"), remote.WithAuth(authn.Anonymous), ctx)
	expectStatus(t, "anonymous pull of team/app", err, http.StatusUnauthorized)
	// writer copies across repositories (a cross-repository mount)
	src, err := remote.Image(fx.ref(t, "team/app:v1"), remote.WithAuth(keychain("writer")), ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(fx.ref(t, "team/copy:v1"), src, remote.WithAuth(keychain("writer")), ctx); err != nil {
		t.Errorf("writer copy: %v", err)
	}
	// admin deletes, writer may not
	d := must(img.Digest())
	err = remote.Delete(fx.ref(t, "team/app@"+d.String()), remote.WithAuth(keychain("writer")), ctx)
	expectStatus(t, "writer delete", err, http.StatusForbidden)
	if err := remote.Delete(fx.ref(t, "team/app@"+d.String()), remote.WithAuth(keychain("admin")), ctx); err != nil {
		t.Errorf("admin delete: %v", err)
	}
	// catalog: the admin sees everything, the reader what it may pull
	reg, _ := name.NewRegistry(fx.reg.Host, name.Insecure)
	repos, err := remote.Catalog(t.Context(), reg, remote.WithAuth(keychain("admin")))
	if err != nil || !slices.Equal(repos, []string{"public/base", "team/app", "team/copy"}) {
		t.Errorf("admin catalog = %v, %v", repos, err)
	}
	repos, err = remote.Catalog(t.Context(), reg, remote.WithAuth(keychain("reader")))
	if err != nil || !slices.Equal(repos, []string{"public/base", "team/app", "team/copy"}) {
		t.Errorf("reader catalog = %v, %v", repos, err)
	}
	_, err = remote.Catalog(t.Context(), reg, remote.WithAuth(authn.Anonymous))
	expectStatus(t, "anonymous catalog", err, http.StatusUnauthorized)
}

func TestGGCRBasicMode(t *testing.T) {
	fx := newFixture(t, service.ModeBasic)
	fx.push(t, "writer", "team/app:v1")
	ctx := remote.WithContext(t.Context())
	if _, err := remote.Image(fx.ref(t, "team/app:v1"), remote.WithAuth(keychain("reader")), ctx); err != nil {
		t.Errorf("reader pull: %v", err)
	}
	rimg, _ := random.Image(100, 1)
	expectStatus(t, "reader push", remote.Write(fx.ref(t, "team/app:v2"), rimg, remote.WithAuth(keychain("reader")), ctx), http.StatusForbidden)
	_, err := remote.Image(fx.ref(t, "team/app:v1"), remote.WithAuth(keychain("wrong")), ctx)
	expectStatus(t, "wrong password", err, http.StatusUnauthorized)
	reg, _ := name.NewRegistry(fx.reg.Host, name.Insecure)
	repos, err := remote.Catalog(t.Context(), reg, remote.WithAuth(keychain("reader")))
	if err != nil || !slices.Equal(repos, []string{"team/app"}) {
		t.Errorf("reader catalog = %v, %v", repos, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func expectStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var te *transport.Error
	if !errors.As(err, &te) {
		t.Errorf("%s: error %v, want HTTP %d", what, err, status)
		return
	}
	if te.StatusCode != status {
		t.Errorf("%s: HTTP %d, want %d (%v)", what, te.StatusCode, status, err)
	}
}

// ---- tokens: expiry, tampering, scope ----

func (fx *fixture) token(t *testing.T, user string, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {"wharf-test"}, "scope": scopes}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fx.reg.URL+"/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, users[user])
	}
	resp, b := testhttp.Do(t, nil, req)
	if resp.StatusCode != 200 {
		t.Fatalf("token for %q: %d %s", user, resp.StatusCode, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"token", "access_token", "expires_in", "issued_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("token response lacks %s: %s", k, b)
		}
	}
	return m["token"].(string)
}

func (fx *fixture) bearer(t *testing.T, method, path, tok string) result {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, fx.reg.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return roundTrip(t, req)
}

func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	p := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(p[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func TestTokens(t *testing.T) {
	fx := newFixture(t, service.ModeToken)
	fx.push(t, "admin", "team/app:v1")
	fx.push(t, "admin", "team/other:v1")

	// The grant is the intersection of what was asked and the policy.
	tok := fx.token(t, "reader", "repository:team/app:pull,push", "repository:secret/x:pull", "registry:catalog:*")
	c := claims(t, tok)
	acc, _ := json.Marshal(c["access"])
	if string(acc) != `[{"actions":["pull"],"name":"team/app","type":"repository"},{"actions":["*"],"name":"catalog","type":"registry"}]` {
		t.Errorf("access = %s", acc)
	}
	if c["iss"] != "wharf-test-issuer" || c["aud"] != "wharf-test" && fmt.Sprint(c["aud"]) != "[wharf-test]" || c["sub"] != "reader" {
		t.Errorf("claims = %v", c)
	}
	if r := fx.bearer(t, "GET", "/v2/team/app/manifests/v1", tok); r.status != 200 {
		t.Errorf("pull with token: %d", r.status)
	}
	// A scope the token does not cover but the policy would grant: 401 with
	// a challenge for the scope needed.
	r := fx.bearer(t, "GET", "/v2/team/other/manifests/v1", tok)
	ch := r.header.Get("WWW-Authenticate")
	if r.status != 401 || !strings.Contains(ch, `scope="repository:team/other:pull"`) || !strings.Contains(ch, `error="insufficient_scope"`) {
		t.Errorf("uncovered scope: %d %q", r.status, ch)
	}
	// A scope the policy does not give the token's subject: 403.
	if r := fx.bearer(t, "POST", "/v2/team/app/blobs/uploads/", tok); r.status != 403 {
		t.Errorf("push with a reader's token: %d", r.status)
	}
	// A writer's pull-only token on a push: 401 + challenge (a new token helps).
	wtok := fx.token(t, "writer", "repository:team/app:pull")
	r = fx.bearer(t, "POST", "/v2/team/app/blobs/uploads/", wtok)
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="repository:team/app:pull,push"`) {
		t.Errorf("writer pull token on push: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	// Tampered: payload edited to grant push; signature kept.
	p := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(p[1])
	p[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(`["pull"]`), []byte(`["pull","push"]`), 1))
	r = fx.bearer(t, "POST", "/v2/team/app/blobs/uploads/", strings.Join(p, "."))
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("tampered token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := fx.bearer(t, "GET", "/v2/team/app/manifests/v1", "garbage"); r.status != 401 {
		t.Errorf("garbage token: %d", r.status)
	}
	// Expired: verified once (cached), then the clock passes exp.
	fx.clock.Advance(5*time.Minute + token.Leeway + time.Second)
	if r := fx.bearer(t, "GET", "/v2/team/app/manifests/v1", tok); r.status != 401 {
		t.Errorf("expired (cached) token: %d", r.status)
	}
	if r := fx.bearer(t, "GET", "/v2/team/app/manifests/v1", wtok); r.status != 401 {
		t.Errorf("expired token: %d", r.status)
	}
	// Anonymous tokens carry only what anonymous may do.
	atok := fx.token(t, "", "repository:public/x:pull,push", "repository:team/app:pull")
	acc, _ = json.Marshal(claims(t, atok)["access"])
	if string(acc) != `[{"actions":["pull"],"name":"public/x","type":"repository"}]` {
		t.Errorf("anonymous access = %s", acc)
	}
	if r := fx.bearer(t, "GET", "/v2/", atok); r.status != 401 {
		t.Errorf("anonymous token on /v2/: %d", r.status)
	}
	// Wrong password at the token endpoint: 401 with a Basic challenge.
	req, _ := http.NewRequest("GET", fx.reg.URL+"/token?service=wharf-test", nil)
	req.SetBasicAuth("reader", "nope")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("token with wrong password: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// Another service: 400.
	req, _ = http.NewRequest("GET", fx.reg.URL+"/token?service=other", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("token for another service: %d", resp.StatusCode)
	}
}

func TestTokenPOSTPasswordGrant(t *testing.T) {
	fx := newFixture(t, service.ModeToken)
	post := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(fx.reg.URL+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	st, m := post(url.Values{"grant_type": {"password"}, "username": {"writer"}, "password": {users["writer"]},
		"service": {"wharf-test"}, "scope": {"repository:team/a:pull,push repository:x:pull"}, "client_id": {"test"}})
	if st != 200 || m["access_token"] == nil || m["scope"] != "repository:team/a:pull,push" {
		t.Errorf("password grant: %d %v", st, m)
	}
	if st, m := post(url.Values{"grant_type": {"password"}, "username": {"writer"}, "password": {"x"}}); st != 401 || m["error"] != "invalid_grant" {
		t.Errorf("wrong password grant: %d %v", st, m)
	}
	if st, m := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}); st != 400 || m["error"] != "unsupported_grant_type" {
		t.Errorf("refresh grant: %d %v", st, m)
	}
}

// extToken is a token of the external issuer for subject, expiring after exp.
func (fx *fixture) extToken(t *testing.T, subject string, exp time.Duration, acc ...auth.Access) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodES256, token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: extIssuer, Subject: subject, Audience: jwt.ClaimStrings{"wharf-test"},
			ExpiresAt: jwt.NewNumericDate(fx.clock.Now().Add(exp))},
		Access: acc,
	})
	tk.Header["kid"] = "ext"
	s, err := tk.SignedString(fx.ext)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Tokens of an external issuer are accepted on their access claim alone.
func TestExternalIssuer(t *testing.T) {
	fx := newFixture(t, service.ModeToken)
	fx.push(t, "admin", "team/app:v1")
	fx.push(t, "admin", "secret/app:v1")
	sign := func(acc []auth.Access, exp time.Duration) string { return fx.extToken(t, "ci-bot", exp, acc...) }
	tok := sign([]auth.Access{{Type: "repository", Name: "secret/app", Actions: []string{"pull"}}}, time.Minute)
	if r := fx.bearer(t, "GET", "/v2/secret/app/manifests/v1", tok); r.status != 200 {
		t.Errorf("external token pull: %d %s", r.status, r.body)
	}
	if r := fx.bearer(t, "GET", "/v2/team/app/manifests/v1", tok); r.status != 401 {
		t.Errorf("external token, uncovered scope: %d", r.status)
	}
	r := fx.bearer(t, "GET", "/v2/_catalog", tok)
	if r.status != 200 || !strings.Contains(string(r.body), `["secret/app"]`) {
		t.Errorf("external token catalog: %d %s", r.status, r.body)
	}
	if r := fx.bearer(t, "GET", "/v2/secret/app/manifests/v1", sign(nil, -time.Hour)); r.status != 401 {
		t.Errorf("expired external token: %d", r.status)
	}
}

// ---- failed logins ----

func TestFailedLoginsRateLimited(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode, fixtureOpts{burst: 3})
			path := "/v2/"
			if mode == service.ModeToken {
				path = "/token?service=wharf-test"
			}
			try := func(user, pass string) result {
				req, _ := http.NewRequest("GET", fx.reg.URL+path, nil)
				req.SetBasicAuth(user, pass)
				return roundTrip(t, req)
			}
			for i := range 3 {
				if r := try("writer", fmt.Sprintf("guess-%d", i)); r.status != 401 {
					t.Fatalf("failure %d: %d", i, r.status)
				}
			}
			r := try("writer", "guess-3")
			if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "TOOMANYREQUESTS") {
				t.Fatalf("after the burst: %d %q %s", r.status, r.header.Get("Retry-After"), r.body)
			}
			// The right password is refused too until the bucket refills:
			// the limit applies before the password is checked.
			if r := try("writer", users["writer"]); r.status != 429 {
				t.Errorf("right password while limited: %d", r.status)
			}
			fx.clock.Advance(61 * time.Second)
			if r := try("writer", users["writer"]); r.status != 200 {
				t.Errorf("after refill: %d %s", r.status, r.body)
			}
			logs := fx.logs.String()
			if !strings.Contains(logs, "failed login") || strings.Contains(logs, "guess-") || strings.Contains(logs, users["writer"]) {
				t.Errorf("logs: want failed logins logged without passwords:\n%s", logs)
			}
		})
	}
}

// TestFailedLoginsBehindProxy: behind a trusted load balancer, failed
// logins are counted per client (X-Forwarded-For), not per balancer: one
// client guessing passwords for many users does not lock out another.
func TestFailedLoginsBehindProxy(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode, fixtureOpts{burst: 3, trustLoopback: true})
			try := func(client, user, pass string) int { return fx.loginAs(t, client, user, pass) }
			// A different user each time: only the address bucket fills.
			for i := range 3 {
				if got := try("203.0.113.7", fmt.Sprintf("nobody-%d", i), "guess"); got != 401 {
					t.Fatalf("failure %d: %d", i, got)
				}
			}
			if got := try("203.0.113.7", "nobody-3", "guess"); got != 429 {
				t.Fatalf("the guessing client after its burst: %d, want 429", got)
			}
			if got := try("198.51.100.2", "writer", users["writer"]); got != 200 {
				t.Fatalf("another client behind the same proxy: %d, want 200", got)
			}
			// A forged hop before the proxy's own does not help: the
			// right-most address that is not a trusted proxy counts.
			if got := try("198.51.100.99, 203.0.113.7", "nobody-4", "guess"); got != 429 {
				t.Fatalf("forged X-Forwarded-For: %d, want 429", got)
			}
		})
	}
}

// ---- client certificates ----

func TestClientCertificateIdentity(t *testing.T) {
	fx := newFixture(t, service.ModeBasic)
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "writer"}}
	req := httptest.NewRequest("POST", "/v2/team/app/blobs/uploads/", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	scope := auth.Scope{Repo: "team/app", Actions: []auth.Action{auth.Pull, auth.Push}}
	id, err := fx.svc.Authorize(req, scope)
	if err != nil || id.Subject != "writer" {
		t.Errorf("verified certificate: %v, %v", id, err)
	}
	// An unverified certificate is no identity.
	req.TLS.VerifiedChains = nil
	if _, err := fx.svc.Authorize(req, scope); err == nil {
		t.Error("unverified certificate accepted")
	}
}

// The htpasswd file is re-read when it changes (wharf user add/remove).
func TestHtpasswdReload(t *testing.T) {
	fx := newFixture(t, service.ModeBasic)
	if r := fx.do(t, "reader", "GET", "/v2/"); r.status != 200 {
		t.Fatalf("reader: %d", r.status)
	}
	f, err := htpasswd.Load(fx.htpasswd)
	if err != nil {
		t.Fatal(err)
	}
	f.Remove("reader")
	if err := f.Set("newcomer", "pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(fx.htpasswd); err != nil {
		t.Fatal(err)
	}
	fx.clock.Advance(3 * time.Second) // the file is stat'ed every 2s
	if r := fx.do(t, "reader", "GET", "/v2/"); r.status != 401 {
		t.Errorf("removed user (cached before): %d", r.status)
	}
	users["newcomer"] = "pw"
	defer delete(users, "newcomer")
	if r := fx.do(t, "newcomer", "GET", "/v2/"); r.status != 200 {
		t.Errorf("added user: %d", r.status)
	}
}

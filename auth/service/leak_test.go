package service_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/oci"
)

// nextLink is the target of a Link rel="next" header ("" when absent).
func nextLink(t *testing.T, h http.Header) string {
	t.Helper()
	l := h.Get("Link")
	if l == "" {
		return ""
	}
	i, j := strings.IndexByte(l, '<'), strings.IndexByte(l, '>')
	if i < 0 || j < i || !strings.Contains(l[j:], `rel="next"`) {
		t.Fatalf("malformed Link %q", l)
	}
	return l[i+1 : j]
}

// TestCatalogPagesNeverNameHiddenRepositories: a paginated catalog is
// filled with repositories the caller may pull, and its Link never names
// one it may not (the Link used to be built before filtering, so reader
// learned "secret/app" from GET /v2/_catalog?n=1&last=public/app).
func TestCatalogPagesNeverNameHiddenRepositories(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode)
			all := []string{"public/app", "secret/app", "secret/b", "secret/c", "team/app", "team/b", "zzz/secret"}
			for _, r := range all {
				fx.push(t, "admin", r+":v1")
			}
			visible := map[string][]string{
				"reader": {"public/app", "team/app", "team/b"},
				"admin":  all,
			}

			// The reported repro.
			r := fx.do(t, "reader", http.MethodGet, "/v2/_catalog?n=1&last=public/app")
			if r.status != http.StatusOK || strings.Contains(r.header.Get("Link"), "secret") ||
				!strings.Contains(string(r.body), `"team/app"`) {
				t.Fatalf("reader, n=1 after public/app: %d Link %q %s; want team/app and no hidden name", r.status, r.header.Get("Link"), r.body)
			}

			for who, want := range visible {
				for _, n := range []int{1, 2, 3, 100} {
					var got []string
					next := "/v2/_catalog?n=" + strconv.Itoa(n)
					for pages := 0; next != ""; pages++ {
						if pages > len(all)+1 {
							t.Fatalf("%s n=%d: no end after %d pages", who, n, pages)
						}
						r := fx.do(t, who, http.MethodGet, next)
						if r.status != http.StatusOK {
							t.Fatalf("%s %s: %d %s", who, next, r.status, r.body)
						}
						var c struct{ Repositories []string }
						if err := json.Unmarshal(r.body, &c); err != nil {
							t.Fatal(err)
						}
						next = nextLink(t, r.header)
						if next != "" && len(c.Repositories) != n {
							t.Errorf("%s %s: a page of %d with a Link, want %d", who, next, len(c.Repositories), n)
						}
						if next != "" {
							u, err := url.Parse(next)
							if err != nil {
								t.Fatal(err)
							}
							if last := u.Query().Get("last"); !slices.Contains(want, last) {
								t.Fatalf("%s n=%d: Link names %q, which the caller may not pull", who, n, last)
							}
						}
						got = append(got, c.Repositories...)
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s n=%d: walked %v, want %v", who, n, got, want)
					}
				}
			}
			// The last visible page has no Link, though hidden ones follow.
			r = fx.do(t, "reader", http.MethodGet, "/v2/_catalog?n=1&last=team/app")
			if l := r.header.Get("Link"); l != "" || !strings.Contains(string(r.body), `"team/b"`) {
				t.Errorf("reader's last page: Link %q, body %s; want team/b and no Link", l, r.body)
			}
		})
	}
}

// TestMountOnlyFromPullableRepositories: a cross-repository mount, with
// or without from, takes the blob only from a repository the caller may
// pull; otherwise an ordinary upload starts (202) and the answer is the
// same as for a blob that exists nowhere.
func TestMountOnlyFromPullableRepositories(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode)
			layerDigest := func(ref string) string { return firstLayer(t, fx.push(t, "admin", ref)) }
			secret := layerDigest("secret/src:v1") // only in secret/src
			team := layerDigest("team/src:v1")     // only in team/src
			missing := "sha256:" + strings.Repeat("1", 64)

			mount := func(who, repo, query string) result {
				t.Helper()
				return fx.do(t, who, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?"+query)
			}
			head := func(repo, d string) int {
				return fx.do(t, "admin", http.MethodHead, "/v2/"+repo+"/blobs/"+d).status
			}
			// In token mode a token covers only what it names: the token a
			// client gets for an automatic mount names the target alone,
			// so nothing else is a source (TestTokenGrantsItsClaimOnly).
			auto := http.StatusCreated
			if mode == service.ModeToken {
				auto = http.StatusAccepted
			}
			cases := []struct {
				who, repo, query string
				want             int
			}{
				// Automatic mount (no from): only from a pullable repository.
				{"writer", "team/a", "mount=" + team, auto},
				{"admin", "secret/dst", "mount=" + secret, auto}, // not a repository writer reads
				{"writer", "team/c", "mount=" + secret, http.StatusAccepted},
				// from= a repository the caller may not read.
				{"writer", "team/d", "mount=" + secret + "&from=secret/src", http.StatusAccepted},
				// from= one it may read, that holds the blob.
				{"writer", "team/e", "mount=" + team + "&from=team/src", http.StatusCreated},
			}
			for _, c := range cases {
				r := mount(c.who, c.repo, c.query)
				if r.status != c.want {
					t.Errorf("%s POST %s ?%s: %d, want %d (%s)", c.who, c.repo, c.query, r.status, c.want, r.body)
					continue
				}
				d := strings.TrimPrefix(strings.Split(c.query, "&")[0], "mount=")
				linked := head(c.repo, d) == http.StatusOK
				if linked != (c.want == http.StatusCreated) {
					t.Errorf("%s POST %s ?%s: blob linked=%v after %d", c.who, c.repo, c.query, linked, r.status)
				}
				if c.want == http.StatusAccepted {
					// Nothing to tell from a blob that exists nowhere.
					m := mount(c.who, c.repo, strings.ReplaceAll(c.query, d, missing))
					if m.status != r.status || !sameShape(r.header, m.header) || string(m.body) != string(r.body) {
						t.Errorf("%s ?%s: %d %v %q vs missing blob: %d %v %q", c.who, c.query,
							r.status, r.header, r.body, m.status, m.header, m.body)
					}
				}
			}
		})
	}
}

// sameShape compares two upload-start answers, ignoring what differs
// between any two uploads (their ids, request ids, dates).
func sameShape(a, b http.Header) bool {
	keys := func(h http.Header) []string {
		var k []string
		for name := range h {
			k = append(k, name)
		}
		slices.Sort(k)
		return k
	}
	if !slices.Equal(keys(a), keys(b)) {
		return false
	}
	for _, k := range []string{"Range", "Content-Length", "Content-Type"} {
		if a.Get(k) != b.Get(k) {
			return false
		}
	}
	return true
}

var realmRE = regexp.MustCompile(`realm="([^"]*)"`)

// TestForwardedProtoTrustedOnlyFromProxy: the challenge realm's scheme
// follows X-Forwarded-Proto only when a trusted proxy sent it.
func TestForwardedProtoTrustedOnlyFromProxy(t *testing.T) {
	for _, trust := range []bool{false, true} {
		fx := newFixture(t, service.ModeToken, fixtureOpts{trustLoopback: trust})
		for _, proto := range []string{"", "https"} {
			req, _ := http.NewRequest(http.MethodGet, fx.reg.URL+"/v2/team/app/tags/list", nil)
			if proto != "" {
				req.Header.Set("X-Forwarded-Proto", proto)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			m := realmRE.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
			if m == nil {
				t.Fatalf("no realm in %q", resp.Header.Get("WWW-Authenticate"))
			}
			want := "http://"
			if trust && proto == "https" {
				want = "https://"
			}
			if !strings.HasPrefix(m[1], want) {
				t.Errorf("trusted proxy %v, X-Forwarded-Proto %q: realm %q, want %s...", trust, proto, m[1], want)
			}
		}
	}
}

// TestPlainHTTPWarningIgnoresUntrustedForwardedProto: a caller cannot
// silence the plain-HTTP credentials warning by sending
// X-Forwarded-Proto itself; a trusted proxy can.
func TestPlainHTTPWarningIgnoresUntrustedForwardedProto(t *testing.T) {
	const warning = "CREDENTIALS ACCEPTED OVER PLAIN HTTP"
	for _, c := range []struct {
		name         string
		proxy, https bool
		warn         bool
	}{
		{"untrusted X-Forwarded-Proto", false, true, true},
		{"trusted proxy, https", true, true, false},
		{"trusted proxy, http", true, false, true},
		{"no header", false, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, service.ModeBasic)
			req := httptest.NewRequest(http.MethodGet, "/v2/team/app/tags/list", nil)
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("reader:"+users["reader"])))
			if c.https {
				req.Header.Set("X-Forwarded-Proto", "https")
			}
			// Served on a non-loopback address, as net/http records it.
			ctx := context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 5000})
			if c.proxy {
				ctx = auth.ViaProxy(ctx, "198.51.100.7")
			}
			fx.clock.Advance(time.Hour)
			if _, err := fx.svc.Authorize(req.WithContext(ctx), auth.Scope{Repo: "team/app", Actions: []auth.Action{auth.Pull}}); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(fx.logs.String(), warning); got != c.warn {
				t.Errorf("warned %v, want %v; logs:\n%s", got, c.warn, fx.logs.String())
			}
		})
	}
}

// TestLoginLogLinesCarryRequestID: the failed-login and login-refused
// lines carry the request_id of the response they belong to, on /v2/ and
// on the token endpoint.
func TestLoginLogLinesCarryRequestID(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode, fixtureOpts{burst: 1, requestIDs: true})
			path := "/v2/"
			if mode == service.ModeToken {
				path = "/token?service=wharf-test"
			}
			try := func(wantStatus int) string {
				req, _ := http.NewRequest(http.MethodGet, fx.reg.URL+path, nil)
				req.SetBasicAuth("writer", "guess")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				id := resp.Header.Get("X-Request-Id")
				if resp.StatusCode != wantStatus || id == "" {
					t.Fatalf("status %d, X-Request-Id %q; want %d and an id", resp.StatusCode, id, wantStatus)
				}
				return id
			}
			failed := try(http.StatusUnauthorized)
			refused := try(http.StatusTooManyRequests)
			line := func(msg string) string {
				for _, l := range strings.Split(fx.logs.String(), "\n") {
					if strings.Contains(l, `msg="`+msg) {
						return l
					}
				}
				t.Fatalf("no %q line in:\n%s", msg, fx.logs.String())
				return ""
			}
			if l := line("failed login"); !strings.Contains(l, "request_id="+failed) {
				t.Errorf("failed-login line without request_id=%s: %s", failed, l)
			}
			if l := line("login refused"); !strings.Contains(l, "request_id="+refused) {
				t.Errorf("login-refused line without request_id=%s: %s", refused, l)
			}
		})
	}
}

// TestCatalogPagesSkipManyHiddenRepositories: a page is filled from
// beyond a run of hidden repositories longer than one read from the store.
func TestCatalogPagesSkipManyHiddenRepositories(t *testing.T) {
	fx := newFixture(t, service.ModeBasic)
	img := fx.push(t, "admin", "public/app:v1")
	fx.push(t, "admin", "team/app:v1")
	fx.push(t, "admin", "team/b:v1")
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	cfg, _ := img.ConfigName()
	digests := []v1.Hash{cfg}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		digests = append(digests, d)
	}
	ctx := t.Context()
	ref, err := oci.ParseReference("v1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 250 { // hidden from reader, between public/app and team/app
		repo := fmt.Sprintf("secret/x%03d", i)
		for _, d := range digests {
			if ok, err := fx.reg.Registry.MountBlob(ctx, repo, digest.Digest(d.String()), "public/app", func(string) bool { return true }); !ok || err != nil {
				t.Fatalf("mount %s into %s: %v %v", d, repo, ok, err)
			}
		}
		if _, err := fx.reg.Registry.PutManifest(ctx, repo, ref, string(mt), raw); err != nil {
			t.Fatal(err)
		}
	}
	r := fx.do(t, "reader", http.MethodGet, "/v2/_catalog?n=1&last=public/app")
	if string(r.body) != `{"repositories":["team/app"]}` || !strings.Contains(nextLink(t, r.header), "last=team%2Fapp") {
		t.Errorf("reader, n=1 after public/app: %s, Link %q; want team/app and a Link after it", r.body, r.header.Get("Link"))
	}
	r = fx.do(t, "reader", http.MethodGet, "/v2/_catalog?n=2")
	if string(r.body) != `{"repositories":["public/app","team/app"]}` || !strings.Contains(nextLink(t, r.header), "last=team%2Fapp") {
		t.Errorf("reader, n=2: %s, Link %q", r.body, r.header.Get("Link"))
	}
	r = fx.do(t, "admin", http.MethodGet, "/v2/_catalog?n=3&last=secret/x248")
	if string(r.body) != `{"repositories":["secret/x249","team/app","team/b"]}` || r.header.Get("Link") != "" {
		t.Errorf("admin, n=3 after secret/x248: %s, Link %q; want the last three and no Link", r.body, r.header.Get("Link"))
	}
}

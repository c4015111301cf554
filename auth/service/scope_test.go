package service_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
)

// firstLayer is the digest of img's first layer.
func firstLayer(t *testing.T, img v1.Image) string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// catalogOf is the repositories a GET /v2/_catalog with tok lists.
func (fx *fixture) catalogOf(t *testing.T, tok string) []string {
	t.Helper()
	r := fx.bearer(t, http.MethodGet, "/v2/_catalog", tok)
	if r.status != http.StatusOK {
		t.Fatalf("catalog: %d %s", r.status, r.body)
	}
	var c struct{ Repositories []string }
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	return c.Repositories
}

// TestTokenGrantsItsClaimOnly: a token scoped to one repository can
// neither mount from another its user may read nor list the catalog its
// user's policy allows (both used to ask the policy, not the token).
func TestTokenGrantsItsClaimOnly(t *testing.T) {
	fx := newFixture(t, service.ModeToken)
	img := fx.push(t, "admin", "team/b:v1")
	fx.push(t, "admin", "team/d:v1")
	fx.push(t, "admin", "secret/s:v1")
	layer := firstLayer(t, img)

	// writer may pull team/b; this token covers team/d only.
	tok := fx.token(t, "writer", "repository:team/d:pull,push")
	for _, q := range []string{"mount=" + layer + "&from=team/b", "mount=" + layer} {
		r := fx.bearer(t, http.MethodPost, "/v2/team/d/blobs/uploads/?"+q, tok)
		if r.status != http.StatusAccepted || r.header.Get("Location") == "" {
			t.Errorf("mount ?%s with a team/d token: %d %s, want 202 (an ordinary upload)", q, r.status, r.body)
		}
	}
	if r := fx.bearer(t, http.MethodHead, "/v2/team/d/blobs/"+layer, tok); r.status != http.StatusNotFound {
		t.Errorf("the blob of team/b readable through team/d: %d", r.status)
	}
	if got := fx.catalogOf(t, tok); !slices.Equal(got, []string{"team/d"}) {
		t.Errorf("catalog with a team/d token = %v, want [team/d]", got)
	}
	// The admin's token lists only what it covers too.
	if got := fx.catalogOf(t, fx.token(t, "admin", "repository:team/d:pull")); !slices.Equal(got, []string{"team/d"}) {
		t.Errorf("catalog with an admin's team/d token = %v, want [team/d]", got)
	}

	// With pull on the source in the token, the mount happens.
	both := fx.token(t, "writer", "repository:team/d:pull,push", "repository:team/b:pull")
	if r := fx.bearer(t, http.MethodPost, "/v2/team/d/blobs/uploads/?mount="+layer+"&from=team/b", both); r.status != http.StatusCreated {
		t.Errorf("mount with pull on the source in the token: %d %s", r.status, r.body)
	}
	// A mount's challenge names the source, so a client gets both at once.
	r := fx.bearer(t, http.MethodPost, "/v2/team/x/blobs/uploads/?mount="+layer+"&from=team/b", fx.token(t, "writer"))
	if ch := r.header.Get("WWW-Authenticate"); r.status != 401 || !strings.Contains(ch, `scope="repository:team/x:pull,push repository:team/b:pull"`) {
		t.Errorf("mount challenge: %d %q", r.status, ch)
	}

	// registry:catalog:* is granted to authenticated users and lists what
	// the policy lets them pull; everything for an admin.
	c := claims(t, fx.token(t, "writer", "registry:catalog:*"))
	if acc, _ := json.Marshal(c["access"]); string(acc) != `[{"actions":["*"],"name":"catalog","type":"registry"}]` {
		t.Errorf("writer's catalog token access = %s", acc)
	}
	if got := fx.catalogOf(t, fx.token(t, "writer", "registry:catalog:*")); !slices.Equal(got, []string{"team/b", "team/d"}) {
		t.Errorf("catalog with writer's catalog token = %v", got)
	}
	if got := fx.catalogOf(t, fx.token(t, "admin", "registry:catalog:*")); !slices.Equal(got, []string{"secret/s", "team/b", "team/d"}) {
		t.Errorf("catalog with admin's catalog token = %v", got)
	}
	if acc, _ := json.Marshal(claims(t, fx.token(t, "", "registry:catalog:*"))["access"]); string(acc) != `[]` {
		t.Errorf("anonymous catalog token access = %s", acc)
	}

	// An external issuer's token: its claim alone, catalog included.
	ext := func(acc ...auth.Access) string { return fx.extToken(t, "writer", time.Minute, acc...) }
	push := auth.Access{Type: "repository", Name: "team/e", Actions: []string{"pull", "push"}}
	if r := fx.bearer(t, http.MethodPost, "/v2/team/e/blobs/uploads/?mount="+layer+"&from=team/b", ext(push)); r.status != http.StatusAccepted {
		t.Errorf("external token mount without the source: %d", r.status)
	}
	if got := fx.catalogOf(t, ext(auth.Access{Type: "registry", Name: "catalog", Actions: []string{"*"}})); !slices.Contains(got, "secret/s") {
		t.Errorf("external catalog token lists %v, want every repository", got)
	}
}

// TestTokenValidNamesAndBoundedScopes: /token grants no name that can
// never be valid ("public/../team/b" matched the anonymous "public/**"),
// and answers 400 to more than service.MaxScopes scopes.
func TestTokenValidNamesAndBoundedScopes(t *testing.T) {
	fx := newFixture(t, service.ModeToken)
	for _, who := range []string{"", "reader"} {
		tok := fx.token(t, who, "repository:public/../team/b:pull", "repository:public/./x:pull",
			"repository:public/A:pull", "repository:public//x:pull", "repository:public/x/:pull", "repository:public/ok:pull")
		if acc, _ := json.Marshal(claims(t, tok)["access"]); string(acc) != `[{"actions":["pull"],"name":"public/ok","type":"repository"}]` {
			t.Errorf("%q: access = %s, want public/ok alone", who, acc)
		}
	}

	scopes := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = "repository:team/r" + strconv.Itoa(i) + ":pull"
		}
		return s
	}
	if tok := fx.token(t, "reader", scopes(service.MaxScopes)...); len(claims(t, tok)["access"].([]any)) != service.MaxScopes {
		t.Errorf("%d scopes: not all granted", service.MaxScopes)
	}
	get := func(q url.Values) result {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fx.reg.URL+"/token?"+q.Encode(), nil)
		req.SetBasicAuth("reader", users["reader"])
		return roundTrip(t, req)
	}
	over := scopes(service.MaxScopes + 1)
	for what, q := range map[string]url.Values{
		"parameters":       {"service": {"wharf-test"}, "scope": over},
		"one space-joined": {"service": {"wharf-test"}, "scope": {strings.Join(over, " ")}},
	} {
		if r := get(q); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "UNSUPPORTED") {
			t.Errorf("%d scopes as %s: %d %s, want 400", len(over), what, r.status, r.body)
		}
	}
	resp, err := http.PostForm(fx.reg.URL+"/token", url.Values{"grant_type": {"password"}, "username": {"reader"},
		"password": {users["reader"]}, "service": {"wharf-test"}, "scope": {strings.Join(over, " ")}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "invalid_scope") {
		t.Errorf("POST with %d scopes: %d %s, want 400 invalid_scope", len(over), resp.StatusCode, b)
	}
}

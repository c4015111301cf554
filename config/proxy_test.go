package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProxyConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "wharf.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(write(`
proxy:
  upstreams:
    - prefix: dockerhub
      url: https://registry-1.docker.io
      username: me
      password_file: `+filepath.Join(dir, "pw")+`
    - prefix: ghcr
      url: https://ghcr.io
      tag_ttl: 0s
`), []string{"WHARF_PROXY_PASSWORD_GHCR=from-env"})
	if err != nil {
		t.Fatal(err)
	}
	up := c.Proxy.Upstreams
	if len(up) != 2 || up[0].TTL() != DefaultTagTTL || up[1].TTL() != 0 {
		t.Fatalf("upstreams %+v", up)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WHARF_PROXY_PASSWORD_GHCR": "from-env"}
	if pw, err := up[0].Password(func(k string) string { return env[k] }); err != nil || pw != "s3cret" {
		t.Errorf("password_file: %q, %v", pw, err)
	}
	if pw, _ := up[1].Password(func(k string) string { return env[k] }); pw != "from-env" {
		t.Errorf("password from %s: %q", ProxyPasswordEnv("ghcr"), pw)
	}
	if got := ProxyPasswordEnv("my-hub.io"); got != "WHARF_PROXY_PASSWORD_MY_HUB_IO" {
		t.Errorf("ProxyPasswordEnv = %s", got)
	}
	// A password variable for no configured upstream is a typo.
	if _, err := Load(write("proxy: {upstreams: [{prefix: a, url: 'https://a.io'}]}"), []string{"WHARF_PROXY_PASSWORD_B=x"}); err == nil {
		t.Error("a password variable of no upstream accepted")
	}
	ttl := -time.Second
	for _, c := range []struct {
		u    Upstream
		want string
	}{
		{Upstream{Prefix: "", URL: "https://a.io"}, "prefix"},
		{Upstream{Prefix: "Bad", URL: "https://a.io"}, "prefix"},
		{Upstream{Prefix: "a", URL: "a.io"}, "url"},
		{Upstream{Prefix: "a", URL: "https://a.io/v2"}, "url"},
		{Upstream{Prefix: "a", URL: "https://a.io", TagTTL: &ttl}, "tag_ttl"},
		{Upstream{Prefix: "a", URL: "https://a.io", PasswordFile: "/x"}, "without username"},
	} {
		cfg := Default()
		cfg.Proxy.Upstreams = []Upstream{c.u}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.u, err, c.want)
		}
	}
	cfg := Default()
	cfg.Proxy.Upstreams = []Upstream{{Prefix: "hub", URL: "https://a.io"}, {Prefix: "hub/team", URL: "https://b.io"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("nested prefixes: %v", err)
	}
}

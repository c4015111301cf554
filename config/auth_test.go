package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wharf.yaml")
	yml := `
auth:
  mode: basic
  policy:
    admins: [alice]
    groups:
      devs: [bob]
    anonymous_pull: ["public/**"]
    rules:
      - groups: [devs]
        repos: ["team/*"]
        actions: [pull, push]
tls:
  cert: /c.pem
  key: /k.pem
`
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{"WHARF_AUTH_MODE=token", "WHARF_AUTH_TOKEN_TTL=10m"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Mode != "token" || c.Auth.Token.TTL.Minutes() != 10 || len(c.Auth.Policy.Rules) != 1 || c.Auth.Policy.Groups["devs"][0] != "bob" || c.TLS.Cert != "/c.pem" {
		t.Errorf("config = %+v", c.Auth)
	}
	for env, want := range map[string]string{
		"WHARF_AUTH_MODE=ldap":                         "auth.mode",
		"WHARF_AUTH_TOKEN_TTL=10s":                     "auth.token.ttl",
		"WHARF_TLS_KEY=":                               "tls.cert and tls.key",
		"WHARF_AUTH_POLICY=x":                          "no such setting",
		"WHARF_AUTH_TOKEN_EXTERNAL_ISSUER=https://idp": "external_keys",
	} {
		_, err := Load(path, []string{env})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", env, err, want)
		}
	}
	bad := strings.Replace(yml, "groups: [devs]", "groups: [nobody]", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), `unknown group "nobody"`) {
		t.Errorf("bad policy: %v", err)
	}
	for _, s := range Reference() {
		if strings.HasPrefix(s.Key, "auth.policy") {
			t.Errorf("file-only key %s listed as an environment setting", s.Key)
		}
	}
}

package wharftest

import (
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/config"
)

// AuthUsers are the users StartAuth creates, with their passwords.
var AuthUsers = map[string]string{"reader": "reader-pw", "admin": "admin-pw"}

// StartAuth runs a registry configured with auth.mode mode (the token
// endpoint mounted in token mode, as serve mounts it): "admin" may do
// anything, "reader" may pull team/**, nobody anything anonymously.
func StartAuth(t testing.TB, mode service.Mode) *Registry {
	t.Helper()
	dir := t.TempDir()
	hp := WriteHtpasswd(t, dir, AuthUsers)
	return Start(t, Options{Dir: dir, Config: func(c *config.Config) {
		c.Auth.Mode, c.Auth.Htpasswd, c.Auth.Service = config.AuthMode(mode), hp, "wharf-test"
		c.Auth.Token.Issuer = "wharf-test-issuer"
		c.Auth.FailedLogins.PerMinute, c.Auth.FailedLogins.Burst = 1000, 1000
		c.Auth.Policy = auth.PolicySpec{
			Admins: []string{"admin"},
			Rules:  []auth.RuleSpec{{Users: []string{"reader"}, Repos: []string{"team/**"}, Actions: []string{"pull"}}},
		}
	}})
}

// WriteHtpasswd writes users (name to password) as dir/htpasswd, hashed at
// bcrypt's lowest cost to keep tests fast, and returns its path.
func WriteHtpasswd(t testing.TB, dir string, users map[string]string) string {
	t.Helper()
	f := &htpasswd.File{}
	for u, p := range users {
		if err := f.Set(u, p, bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	hp := filepath.Join(dir, "htpasswd")
	if err := f.Save(hp); err != nil {
		t.Fatal(err)
	}
	return hp
}

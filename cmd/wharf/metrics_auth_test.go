package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/testhttp"
)

// TestMetricsOnMainListenerAdminsOnly: with auth on and no metrics.addr,
// /metrics on the main listener answers only the policy's admins (it was
// served to anyone); on metrics.addr it needs no credentials, and without
// auth it is open as before.
func TestMetricsOnMainListenerAdminsOnly(t *testing.T) {
	hp := filepath.Join(t.TempDir(), "htpasswd")
	f := &htpasswd.File{}
	for u, p := range map[string]string{"root": "root-pw", "bob": "bob-pw"} {
		if err := f.Set(u, p, bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Save(hp); err != nil {
		t.Fatal(err)
	}
	get := func(url, user, pass, bearer string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, b := testhttp.Do(t, nil, req)
		return resp.StatusCode, string(b), resp.Header
	}
	withAuth := func(mode config.AuthMode, metricsAddr bool) func(*config.Config) {
		return func(c *config.Config) {
			c.Auth.Mode, c.Auth.Htpasswd = mode, hp
			c.Auth.Policy = auth.PolicySpec{Admins: []string{"root"},
				Rules: []auth.RuleSpec{{Users: []string{"bob"}, Repos: []string{"**"}, Actions: []string{"*"}}}}
			if !metricsAddr {
				c.Metrics.Addr, c.Metrics.Pprof = "", false
			}
		}
	}
	for _, mode := range []config.AuthMode{config.AuthBasic, config.AuthToken} {
		t.Run(string(mode), func(t *testing.T) {
			addr, _, _ := startServe(t, withAuth(mode, false))
			u := "http://" + addr + "/metrics"
			if st, _, h := get(u, "", "", ""); st != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("no credentials: %d %q, want 401 with a Basic challenge", st, h.Get("WWW-Authenticate"))
			}
			if st, _, _ := get(u, "root", "wrong", ""); st != 401 {
				t.Errorf("wrong password: %d, want 401", st)
			}
			if st, _, _ := get(u, "bob", "bob-pw", ""); st != 403 {
				t.Errorf("a user who is not an admin: %d, want 403", st)
			}
			if st, body, _ := get(u, "root", "root-pw", ""); st != 200 || !strings.Contains(body, "wharf_") {
				t.Errorf("admin: %d, want 200 and metrics", st)
			}
			if mode == "token" {
				st, body, _ := get("http://"+addr+"/token?service=wharf&scope=registry:catalog:*", "root", "root-pw", "")
				tok := strings.Split(strings.Split(body, `"token":"`)[1], `"`)[0]
				if st != 200 || tok == "" {
					t.Fatalf("token: %d %s", st, body)
				}
				if st, _, _ := get(u, "", "", tok); st != 401 {
					t.Errorf("an admin's bearer token: %d, want 401 (tokens grant repositories, not metrics)", st)
				}
			}
		})
	}
	t.Run("metrics.addr", func(t *testing.T) {
		addr, maddr, _ := startServe(t, withAuth("basic", true))
		if st, body, _ := get("http://"+maddr+"/metrics", "", "", ""); st != 200 || !strings.Contains(body, "wharf_") {
			t.Errorf("metrics.addr without credentials: %d", st)
		}
		if st, _, _ := get("http://"+addr+"/metrics", "root", "root-pw", ""); st == 200 {
			t.Errorf("main listener with metrics.addr set: %d, want no /metrics there", st)
		}
	})
	t.Run("none", func(t *testing.T) {
		addr, _, _ := startServe(t, func(c *config.Config) { c.Metrics.Addr, c.Metrics.Pprof = "", false })
		if st, _, _ := get("http://"+addr+"/metrics", "", "", ""); st != 200 {
			t.Errorf("auth none: %d, want 200", st)
		}
	})
}

package wharftest

import (
	"crypto"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/auth/token"
)

// AuthUsers are the users StartAuth creates, with their passwords.
var AuthUsers = map[string]string{"reader": "reader-pw", "admin": "admin-pw"}

// StartAuth runs a registry whose auth service is in mode, with the token
// endpoint mounted in token mode: "admin" may do anything, "reader" may
// pull team/**, nobody anything anonymously.
func StartAuth(t testing.TB, mode service.Mode) *Registry {
	t.Helper()
	dir := t.TempDir()
	f := &htpasswd.File{}
	for u, p := range AuthUsers {
		if err := f.Set(u, p, bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	hp := filepath.Join(dir, "htpasswd")
	if err := f.Save(hp); err != nil {
		t.Fatal(err)
	}
	policy, err := auth.CompilePolicy(auth.PolicySpec{
		Admins: []string{"admin"},
		Rules:  []auth.RuleSpec{{Users: []string{"reader"}, Repos: []string{"team/**"}, Actions: []string{"pull"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := service.Options{Mode: mode, Htpasswd: hp, Policy: policy, Service: "wharf-test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FailedLoginsBurst: 1000, FailedLoginsPerMinute: 1000}
	if mode == service.ModeToken {
		key, err := token.LoadOrCreateSigningKey(filepath.Join(dir, "token-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if o.Issuer, err = token.NewIssuer(key, "wharf-test-issuer", "wharf-test", nil); err != nil {
			t.Fatal(err)
		}
		o.Verifier = token.NewVerifier("wharf-test", nil,
			&token.KeySet{Issuer: "wharf-test-issuer", Keys: map[string]crypto.PublicKey{"k": key.Public()}})
	}
	svc, err := service.New(o)
	if err != nil {
		t.Fatal(err)
	}
	wo := Options{Auth: svc}
	if mode == service.ModeToken {
		wo.Handlers = map[string]http.Handler{service.TokenPath: svc.TokenHandler()}
	}
	return Start(t, wo)
}

package main

import (
	"bytes"
	"crypto"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/auth/token"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// startTokenWharf runs a Wharf in token mode with the token endpoint
// mounted (as auth/service's test fixture): "reader" may pull team/**,
// "admin" anything, nobody anonymously.
func startTokenWharf(t *testing.T) *wharftest.Registry {
	t.Helper()
	dir := t.TempDir()
	f := &htpasswd.File{}
	for u, p := range map[string]string{"reader": "reader-pw", "admin": "admin-pw"} {
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
	key, err := token.LoadOrCreateSigningKey(filepath.Join(dir, "token-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(key, "wharf-test-issuer", "wharf-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Options{Mode: service.ModeToken, Htpasswd: hp, Policy: policy, Service: "wharf-test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FailedLoginsBurst: 1000, FailedLoginsPerMinute: 1000,
		Issuer: iss, Verifier: token.NewVerifier("wharf-test", nil,
			&token.KeySet{Issuer: "wharf-test-issuer", Keys: map[string]crypto.PublicKey{"k": key.Public()}})})
	if err != nil {
		t.Fatal(err)
	}
	return wharftest.Start(t, wharftest.Options{Auth: svc, Handlers: map[string]http.Handler{service.TokenPath: svc.TokenHandler()}})
}

// clientRun runs a client command in-process with stdin; it returns
// stdout and stderr together.
func clientRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// --user with --password-stdin through the command, against token auth.
func TestPullPasswordStdin(t *testing.T) {
	w := startTokenWharf(t)
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := w.Host + "/team/app:v1"
	if err := remote.Write(parseRef(t, ref), img, remote.WithAuth(&authn.Basic{Username: "admin", Password: "admin-pw"})); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir()) // no credential files
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")

	dir := t.TempDir()
	out, err := clientRun(t, "reader-pw\n", "pull", ref, "-o", dir, "--user", "reader", "--password-stdin", "--json")
	if err != nil {
		t.Fatalf("pull with --password-stdin: %v\n%s", err, out)
	}
	checkLayoutImage(t, dir, img)

	out, err = clientRun(t, "not-it\n", "pull", ref, "-o", t.TempDir(), "--user", "reader", "--password-stdin")
	if err == nil || !strings.Contains(err.Error(), "login failed") || strings.Contains(err.Error()+out, "not-it") {
		t.Fatalf("wrong password: %v\n%s", err, out)
	}
	if _, err := clientRun(t, "", "pull", ref, "-o", t.TempDir(), "--user", "reader"); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Fatalf("--user without --password-stdin: %v", err)
	}
	if _, err := clientRun(t, "reader-pw\n", "pull", ref, "-o", t.TempDir(), "--password-stdin"); err == nil || !strings.Contains(err.Error(), "--user") {
		t.Fatalf("--password-stdin without --user: %v", err)
	}
	if _, err := clientRun(t, "", "pull", ref, "-o", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("no credentials: %v", err)
	}
}

// --expiry outside 60s..168h is refused, not silently clamped.
func TestExpiryFlagRange(t *testing.T) {
	w := wharftest.Start(t)
	pushRandom(t, w.Host+"/a/app:v1", 1)
	for _, tc := range []struct {
		expiry string
		ok     bool
	}{{"30s", false}, {"0s", false}, {"-5m", false}, {"169h", false}, {"60s", true}, {"168h", true}} {
		for _, args := range [][]string{
			{"pull", w.Host + "/a/app:v1", "-o", t.TempDir()},
			{"blobs", w.Host + "/a/app:v1"},
		} {
			out, err := clientRun(t, "", append(args, "--expiry", tc.expiry)...)
			if tc.ok && err != nil {
				t.Errorf("%s --expiry %s: %v\n%s", args[0], tc.expiry, err, out)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--expiry") || !strings.Contains(err.Error(), "60s") || !strings.Contains(err.Error(), "168h")) {
				t.Errorf("%s --expiry %s: %v, want a clear range error", args[0], tc.expiry, err)
			}
		}
	}
}

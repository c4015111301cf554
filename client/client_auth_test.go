package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// pushAs pushes a random image to host/repoTag as admin.
func pushAs(t *testing.T, host, repoTag string) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	a := authn.FromConfig(authn.AuthConfig{Username: "admin", Password: wharftest.AuthUsers["admin"]})
	if err := remote.Write(ref, img, remote.WithAuth(a)); err != nil {
		t.Fatal(err)
	}
	return img
}

// The bearer-token dance against a real Wharf in token mode: a 401 with a
// Bearer challenge, a token from the realm with Basic credentials, the
// request again with the token.
func TestPullTokenMode(t *testing.T) {
	r := wharftest.StartAuth(t, service.ModeToken)
	img := pushAs(t, r.Host, "team/app:v1")
	ref := r.Host + "/team/app:v1"
	for _, noBatch := range []bool{false, true} {
		c := client.New(client.Options{Keychain: client.StaticKeychain("reader", "reader-pw"), DisableBatch: noBatch})
		dir := t.TempDir()
		res, err := c.Pull(context.Background(), ref, dir, client.Selection{})
		if err != nil {
			t.Fatalf("noBatch=%v: %v", noBatch, err)
		}
		checkLayout(t, dir, img)
		if res.Batch == noBatch {
			t.Errorf("noBatch=%v: batch %v", noBatch, res.Batch)
		}
	}

	// wrong password: the token endpoint's refusal, named as such
	c := client.New(client.Options{Keychain: client.StaticKeychain("reader", "wrong")})
	_, err := c.Pull(context.Background(), ref, t.TempDir(), client.Selection{})
	if err == nil || !strings.Contains(err.Error(), "login failed") || !strings.Contains(err.Error(), `user "reader"`) {
		t.Fatalf("wrong password: %v, want a clear login failure naming the user", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
	t.Logf("wrong password: %v", err)

	// no credentials at all
	c = client.New(client.Options{Keychain: client.StaticKeychain("", "")})
	if _, err := c.Pull(context.Background(), ref, t.TempDir(), client.Selection{}); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("anonymous pull of a private repository: %v, want a hint that credentials are missing", err)
	}

	// a user who may not pull the repository: the standard API's refusal
	pushAs(t, r.Host, "secret/app:v1")
	c = client.New(client.Options{Keychain: client.StaticKeychain("reader", "reader-pw")})
	if _, err := c.Pull(context.Background(), r.Host+"/secret/app:v1", t.TempDir(), client.Selection{}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("reader pulling secret/app: %v, want 403", err)
	}
}

// credEnv points the default keychain at files under a fresh home and
// returns that home.
func credEnv(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	return home
}

func writeAuths(t *testing.T, path, host, user, pass string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
	}})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Credentials from a Docker config file ($DOCKER_CONFIG/config.json),
// in both auth modes; and the order docs/client.md documents: podman's
// $REGISTRY_AUTH_FILE is read only when no Docker config exists.
func TestPullWithDockerConfig(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			r := wharftest.StartAuth(t, mode)
			img := pushAs(t, r.Host, "team/app:v1")
			ref := r.Host + "/team/app:v1"
			pull := func() error {
				c := client.New(client.Options{})
				dir := t.TempDir()
				_, err := c.Pull(context.Background(), ref, dir, client.Selection{})
				if err == nil {
					checkLayout(t, dir, img)
				}
				return err
			}

			home := credEnv(t)
			dc := filepath.Join(home, "dockercfg")
			t.Setenv("DOCKER_CONFIG", dc)
			writeAuths(t, filepath.Join(dc, "config.json"), r.Host, "reader", "reader-pw")
			if err := pull(); err != nil {
				t.Fatalf("with $DOCKER_CONFIG/config.json: %v", err)
			}

			// a Docker config without this registry wins over $REGISTRY_AUTH_FILE
			writeAuths(t, filepath.Join(dc, "config.json"), "elsewhere.example", "x", "y")
			raf := filepath.Join(home, "auth.json")
			writeAuths(t, raf, r.Host, "reader", "reader-pw")
			t.Setenv("REGISTRY_AUTH_FILE", raf)
			if err := pull(); err == nil {
				t.Fatal("$REGISTRY_AUTH_FILE was read although a Docker config exists")
			}
			// no Docker config: $REGISTRY_AUTH_FILE
			if err := os.Remove(filepath.Join(dc, "config.json")); err != nil {
				t.Fatal(err)
			}
			if err := pull(); err != nil {
				t.Fatalf("with $REGISTRY_AUTH_FILE only: %v", err)
			}
			// neither: podman's auth.json under $XDG_CONFIG_HOME
			t.Setenv("REGISTRY_AUTH_FILE", "")
			xdg := filepath.Join(home, "xdg")
			t.Setenv("XDG_CONFIG_HOME", xdg)
			writeAuths(t, filepath.Join(xdg, "containers", "auth.json"), r.Host, "reader", "reader-pw")
			if err := pull(); err != nil {
				t.Fatalf("with $XDG_CONFIG_HOME/containers/auth.json: %v", err)
			}
		})
	}
}

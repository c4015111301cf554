package main

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// --user with --password-stdin through the command, against token auth.
func TestPullPasswordStdin(t *testing.T) {
	w := wharftest.StartAuth(t, service.ModeToken)
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
	out, err := runCmd(t, "reader-pw\n", "pull", ref, "-o", dir, "--user", "reader", "--password-stdin", "--json")
	if err != nil {
		t.Fatalf("pull with --password-stdin: %v\n%s", err, out)
	}
	checkLayoutImage(t, dir, img)

	out, err = runCmd(t, "not-it\n", "pull", ref, "-o", t.TempDir(), "--user", "reader", "--password-stdin")
	if err == nil || !strings.Contains(err.Error(), "login failed") || strings.Contains(err.Error()+out, "not-it") {
		t.Fatalf("wrong password: %v\n%s", err, out)
	}
	if _, err := runCmd(t, "", "pull", ref, "-o", t.TempDir(), "--user", "reader"); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Fatalf("--user without --password-stdin: %v", err)
	}
	if _, err := runCmd(t, "reader-pw\n", "pull", ref, "-o", t.TempDir(), "--password-stdin"); err == nil || !strings.Contains(err.Error(), "--user") {
		t.Fatalf("--password-stdin without --user: %v", err)
	}
	if _, err := runCmd(t, "", "pull", ref, "-o", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no credentials") {
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
			out, err := runCmd(t, "", append(args, "--expiry", tc.expiry)...)
			if tc.ok && err != nil {
				t.Errorf("%s --expiry %s: %v\n%s", args[0], tc.expiry, err, out)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--expiry") || !strings.Contains(err.Error(), "60s") || !strings.Contains(err.Error(), "168h")) {
				t.Errorf("%s --expiry %s: %v, want a clear range error", args[0], tc.expiry, err)
			}
		}
	}
}

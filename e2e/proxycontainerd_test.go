package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/internal/wharftest"
)

// startContainerd runs Debian's containerd as a daemon of the test's own
// (its root, state and socket in a temporary directory) and returns a
// function that runs ctr against it. It skips without containerd or root
// (fails under WHARFDEV_REQUIRE_SERVERS=1).
func startContainerd(t *testing.T) func(args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	ctr, cerr := exec.LookPath("ctr")
	if err != nil || cerr != nil {
		wharftest.SkipOrFail(t, "containerd and ctr not installed (Debian package containerd)")
	}
	if os.Geteuid() != 0 {
		wharftest.SkipOrFail(t, "containerd needs root")
	}
	dir, err := os.MkdirTemp("", "wharf-containerd-") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	run := func(args ...string) (string, error) {
		out, err := exec.Command(ctr, append([]string{"--address", sock, "--namespace", "wharf-test"}, args...)...).CombinedOutput()
		return string(out), err
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := run("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("containerd did not start:\n%s", b)
		}
	}
	return run
}

// TestProxyContainerd: containerd (ctr, the client Kubernetes nodes pull
// with) pulls and unpacks an image through the cache and records
// upstream's digest.
func TestProxyContainerd(t *testing.T) {
	ctr := startContainerd(t)
	f := newProxyFixture(t, time.Hour)
	img := randomImage(t, 2, true)
	f.pushUpstream(t, "team/app:v1", img)
	want, _ := img.Digest()
	ref := f.wharf.Host + "/dist/team/app:v1"
	if out, err := ctr("images", "pull", "--plain-http", "--snapshotter", "native", ref); err != nil {
		t.Fatalf("ctr images pull through the cache: %v\n%s", err, out)
	}
	out, err := ctr("images", "ls")
	if err != nil || !strings.Contains(out, want.String()) {
		t.Errorf("ctr images ls: %v\n%s\nwant %s", err, out, want)
	}
	if n := f.front.count("GET blob"); n != 3 {
		t.Errorf("upstream blob GETs for containerd's pull: %d, want 3 (one per blob)", n)
	}
}

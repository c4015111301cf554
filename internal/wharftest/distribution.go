package wharftest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/internal/freeport"
)

// DistributionBin is Debian's CNCF Distribution 2.8 (package docker-registry).
const DistributionBin = "/usr/bin/docker-registry"

// Distribution is a running CNCF Distribution registry.
type Distribution struct {
	URL  string // http://127.0.0.1:PORT
	Host string // 127.0.0.1:PORT
}

// RequireServers reports whether tests must fail instead of skipping when
// a server they need is missing (WHARFDEV_REQUIRE_SERVERS=1, set by CI).
func RequireServers() bool { return os.Getenv("WHARFDEV_REQUIRE_SERVERS") == "1" }

// SkipOrFail skips the test, or fails it under WHARFDEV_REQUIRE_SERVERS=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireServers() {
		t.Fatalf(format+" (WHARFDEV_REQUIRE_SERVERS=1)", args...)
	}
	t.Skipf(format, args...)
}

// StartDistribution runs /usr/bin/docker-registry on a loopback port with
// a temporary storage directory until the test ends. It skips the test
// when the binary is absent (fails under WHARFDEV_REQUIRE_SERVERS=1).
func StartDistribution(t testing.TB) *Distribution {
	t.Helper()
	if _, err := os.Stat(DistributionBin); err != nil {
		SkipOrFail(t, "%s not installed (apt-get install docker-registry)", DistributionBin)
	}
	dir := t.TempDir()
	var cmd *exec.Cmd
	var host string
	for attempt := 0; attempt < 5; attempt++ {
		host = freeport.MustAddr(t)
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
		path := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(DistributionBin, "serve", path)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, up := WaitStatus("http://"+host+"/v2/", http.StatusOK, 10*time.Second); up {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			return &Distribution{URL: "http://" + host, Host: host}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("docker-registry did not start on %s: %s", host, out.String())
	}
	t.Fatal("could not start docker-registry")
	return nil
}

// WaitStatus polls url until it answers want or d has passed, and
// returns the last status it saw (0: no answer at all).
func WaitStatus(url string, want int, d time.Duration) (last int, ok bool) {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for {
		if resp, err := c.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if last = resp.StatusCode; last == want {
				return last, true
			}
		}
		if time.Now().After(deadline) {
			return last, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

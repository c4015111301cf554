package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/wharf-registry/wharf/internal/wharftest"
)

// TestReadmeExamples runs the shell examples of the README's "Using it by
// hand" section against a real registry, so the README stays true.
func TestReadmeExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the README examples")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Using it by hand")
	if start < 0 {
		t.Fatal(`README has no "## Using it by hand" section`)
	}
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d sh blocks in the section, want at least 2", len(blocks))
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, b := range blocks {
		script.WriteString(b[1])
	}
	reg := wharftest.Start(t)
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "REGISTRY="+reg.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README examples failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"blob: HTTP 201", "config: HTTP 201", "manifest: HTTP 201",
		`{"name":"demo/app","tags":["v1"]}`, "hello, wharf",
		"untag: HTTP 202", "by digest: HTTP 200", "delete manifest: HTTP 202",
		"blob after delete: HTTP 404",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README examples output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(string(out), ": HTTP 202\n") != 4 {
		t.Errorf("want 4 accepted deletes (untag, manifest, 2 blobs):\n%s", out)
	}
}

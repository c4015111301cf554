package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/internal/wharftest"
)

// readmeScript returns the ```sh blocks of one README section, joined.
func readmeScript(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "\n## "+heading+"\n")
	if start < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	section = section[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) == 0 {
		t.Fatalf("no sh blocks in README section %q", heading)
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, b := range blocks {
		script.WriteString(b[1])
	}
	return script.String()
}

func runScript(t *testing.T, script, registryURL string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the README examples")
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "REGISTRY="+registryURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README examples failed: %v\n%s", err, out)
	}
	return string(out)
}

// TestReadmeExamples runs the shell examples of the README's "Using it by
// hand" section against a real registry, so the README stays true.
func TestReadmeExamples(t *testing.T) {
	reg := wharftest.Start(t)
	out := runScript(t, readmeScript(t, "Using it by hand"), reg.URL)
	for _, want := range []string{
		"blob: HTTP 201", "config: HTTP 201", "manifest: HTTP 201",
		`{"name":"demo/app","tags":["v1"]}`, "hello, wharf",
		"untag: HTTP 202", "by digest: HTTP 200", "delete manifest: HTTP 202",
		"blob after delete: HTTP 404",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("README examples output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, ": HTTP 202\n") != 4 {
		t.Errorf("want 4 accepted deletes (untag, manifest, 2 blobs):\n%s", out)
	}
}

// TestReadmeBatchExamples runs the batch-endpoint examples: every blob of a
// pushed image downloads through its signed URL with curl alone.
func TestReadmeBatchExamples(t *testing.T) {
	reg := wharftest.Start(t)
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/demo/batch:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	out := runScript(t, readmeScript(t, "Signed blob URLs and the batch endpoint"), reg.URL)
	mf, _ := img.Manifest()
	for _, desc := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
		if d := desc.Digest.String(); !strings.Contains(out, "downloaded "+d+"\n") {
			t.Errorf("blob %s was not downloaded intact:\n%s", d, out)
		}
	}
	for _, want := range []string{"expiry=30: HTTP 400", "unknown tag: HTTP 404"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

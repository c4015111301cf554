package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/internal/wharftest"
)

// docScript returns the ```sh blocks of one section of a Markdown page (a
// path from the repository root), joined: the section runs from its heading,
// at any level, to the next heading of the same or a higher level. Fences
// are tracked, so a "# comment" inside a shell block is not a heading.
func docScript(t *testing.T, page, heading string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", page))
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	level, blocks := 0, 0 // level: the section's heading level once found
	var fence string      // the open fence's info string ("sh", "json", ...)
	inFence := false
	for _, line := range strings.SplitAfter(string(doc), "\n") {
		trimmed := strings.TrimRight(line, "\n")
		if strings.HasPrefix(trimmed, "```") {
			if inFence {
				inFence = false
				if fence == "sh" && level > 0 {
					blocks++
				}
			} else {
				inFence, fence = true, strings.TrimPrefix(trimmed, "```")
			}
			continue
		}
		if inFence {
			if fence == "sh" && level > 0 {
				script.WriteString(line)
			}
			continue
		}
		if n := headingLevel(trimmed); n > 0 {
			if level > 0 && n <= level {
				break
			}
			if level == 0 && strings.TrimSpace(trimmed[n:]) == heading {
				level = n
			}
		}
	}
	if level == 0 {
		t.Fatalf("%s has no %q section", page, heading)
	}
	if blocks == 0 {
		t.Fatalf("no sh blocks in section %q of %s", heading, page)
	}
	return script.String()
}

// headingLevel is the level of an ATX heading line ("## x" is 2), or 0.
func headingLevel(line string) int {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	if n == 0 || n > 6 || len(line) == n || line[n] != ' ' {
		return 0
	}
	return n
}

func runScript(t *testing.T, script, registryURL string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the documentation's examples")
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "REGISTRY="+registryURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("documentation examples failed: %v\n%s", err, out)
	}
	return string(out)
}

// TestReadmeExamples runs the shell examples of the README's five-minute
// tour against a real registry, so the README stays true.
func TestReadmeExamples(t *testing.T) {
	reg := wharftest.Start(t)
	out := runScript(t, docScript(t, "README.md", "A five-minute tour"), reg.URL)
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

// TestReadmeBatchExamples runs the batch-endpoint examples of
// docs/signed-urls.md: every blob of a pushed image downloads through its
// signed URL with curl alone.
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
	out := runScript(t, docScript(t, "docs/signed-urls.md", "Signed blob URLs and the batch endpoint"), reg.URL)
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

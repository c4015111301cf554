package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wharf-registry/wharf/internal/wharftest"
)

// wharfCLI runs a client command in-process and returns its stdout.
func wharfCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(""))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("wharf %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func jsonSummary(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	return m
}

func parseRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// remoteDigest is the digest a registry serves for ref.
func remoteDigest(t *testing.T, ref string) v1.Hash {
	t.Helper()
	d, err := remote.Head(parseRef(t, ref))
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return d.Digest
}

func pushRandom(t *testing.T, ref string, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(8192, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(parseRef(t, ref), img); err != nil {
		t.Fatal(err)
	}
	return img
}

// pushIndex pushes a two-platform index and a signature-like referrer of it.
func pushIndex(t *testing.T, ref string) (v1.ImageIndex, v1.Image) {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(4096, 2)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	r := parseRef(t, ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	mt, _ := idx.MediaType()
	sz, _ := idx.Size()
	sig, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	sig = mutate.MediaType(sig, types.OCIManifestSchema1)
	sig = mutate.ConfigMediaType(sig, "application/vnd.example.signature.v1+json")
	sig = mutate.Subject(sig, v1.Descriptor{MediaType: mt, Digest: d, Size: sz}).(v1.Image)
	sd, _ := sig.Digest()
	if err := remote.Write(r.Context().Digest(sd.String()), sig); err != nil {
		t.Fatal(err)
	}
	return idx, sig
}

// TestClientAgainstDistribution: pull and copy against CNCF Distribution
// 2.8, which has no batch endpoint (and no referrers API): the client
// falls back to the standard API; Wharf -> Distribution -> Wharf keeps
// every digest.
func TestClientAgainstDistribution(t *testing.T) {
	dist := wharftest.StartDistribution(t)
	w := wharftest.Start(t)
	img := pushRandom(t, w.Host+"/src/app:v1", 4)
	idx, sig := pushIndex(t, w.Host+"/src/multi:v1")
	want := remoteDigest(t, w.Host+"/src/app:v1")

	// Wharf -> Distribution
	out := wharfCLI(t, "copy", w.Host+"/src/app:v1", dist.Host+"/mirror/app:v1", "--json")
	s := jsonSummary(t, out)
	if s["batch"] != true || s["blobs"].(float64) != 5 {
		t.Errorf("copy summary %v: want batch source, 5 blobs", s)
	}
	if got := remoteDigest(t, dist.Host+"/mirror/app:v1"); got != want {
		t.Fatalf("distribution has %s, want %s", got, want)
	}
	// again: everything is skipped
	s = jsonSummary(t, wharfCLI(t, "copy", w.Host+"/src/app:v1", dist.Host+"/mirror/app:v1", "--json"))
	if s["skipped"].(float64) != 5 || s["bytes"].(float64) != 0 {
		t.Errorf("second copy %v: want 5 skipped, 0 bytes", s)
	}

	// pull from Distribution: the standard API
	dir := t.TempDir()
	s = jsonSummary(t, wharfCLI(t, "pull", dist.Host+"/mirror/app:v1", "-o", dir, "--json"))
	if s["batch"] != false {
		t.Errorf("pull from distribution claims the batch endpoint: %v", s)
	}
	checkLayoutImage(t, dir, img)

	// Distribution -> Wharf (another repository)
	wharfCLI(t, "copy", dist.Host+"/mirror/app:v1", w.Host+"/back/app:v1")
	if got := remoteDigest(t, w.Host+"/back/app:v1"); got != want {
		t.Fatalf("round trip gave %s, want %s", got, want)
	}

	// an index with a referrer, both ways
	idxDigest, _ := idx.Digest()
	sigDigest, _ := sig.Digest()
	wharfCLI(t, "copy", w.Host+"/src/multi:v1", dist.Host+"/mirror/multi:v1", "--referrers")
	wharfCLI(t, "copy", dist.Host+"/mirror/multi:v1", w.Host+"/back/multi:v1", "--referrers")
	for _, ref := range []string{dist.Host + "/mirror/multi:v1", w.Host + "/back/multi:v1"} {
		if got := remoteDigest(t, ref); got != idxDigest {
			t.Errorf("%s: %s, want %s", ref, got, idxDigest)
		}
	}
	back := parseRef(t, w.Host+"/back/multi:v1").Context()
	refs, err := remote.Referrers(back.Digest(idxDigest.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := refs.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != sigDigest {
		t.Errorf("referrers after the round trip: %+v, want %s", im.Manifests, sigDigest)
	}

	// pull --platform from an index on Distribution, and --all-platforms
	dir = t.TempDir()
	wharfCLI(t, "pull", dist.Host+"/mirror/multi:v1", "-o", dir, "--platform", "linux/arm64")
	all := t.TempDir()
	s = jsonSummary(t, wharfCLI(t, "pull", w.Host+"/src/multi:v1", "-o", all, "--all-platforms", "--json"))
	if s["images"].(float64) != 2 || s["digest"] != idxDigest.String() {
		t.Errorf("--all-platforms: %v", s)
	}
	lp, err := layout.FromPath(all)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.ImageIndex(); err != nil {
		t.Fatal(err)
	}
}

// Copies inside one registry mount blobs instead of moving them.
func TestCopyMountsWithinARegistry(t *testing.T) {
	w := wharftest.Start(t)
	pushRandom(t, w.Host+"/a/app:v1", 3)
	s := jsonSummary(t, wharfCLI(t, "copy", w.Host+"/a/app:v1", w.Host+"/b/app:v1", "--json"))
	if s["mounted"].(float64) != 4 || s["bytes"].(float64) != 0 {
		t.Errorf("copy within a registry: %v, want 4 mounted, 0 bytes", s)
	}
	if remoteDigest(t, w.Host+"/a/app:v1") != remoteDigest(t, w.Host+"/b/app:v1") {
		t.Error("digests differ")
	}
}

func TestBlobsCommand(t *testing.T) {
	w := wharftest.Start(t)
	pushRandom(t, w.Host+"/a/app:v1", 2)
	var a struct {
		ManifestDigest string `json:"manifestDigest"`
		Blobs          []struct {
			DownloadURL string `json:"downloadUrl"`
		} `json:"blobs"`
	}
	out := wharfCLI(t, "blobs", w.Host+"/a/app:v1", "--expiry", "2m")
	if err := json.Unmarshal([]byte(out), &a); err != nil || len(a.Blobs) != 3 || !strings.Contains(a.Blobs[0].DownloadURL, "expires=") {
		t.Fatalf("blobs output %q: %v", out, err)
	}
}

// The export is read by a real loader: skopeo inspects it and copies it
// to an OCI layout with the same layers.
func TestExportLoadsWithSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		wharftest.SkipOrFail(t, "skopeo not installed (apt-get install skopeo)")
	}
	w := wharftest.Start(t)
	img := pushRandom(t, w.Host+"/exp/app:v1", 3)
	file := filepath.Join(t.TempDir(), "app.tar")
	wharfCLI(t, "export", w.Host+"/exp/app:v1", "-o", file)

	out, err := exec.Command(skopeo, "inspect", "docker-archive:"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct {
		Layers []string `json:"Layers"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	// docker-archive layers are addressed by their uncompressed digests
	// (the image's diff_ids); skopeo keeps them uncompressed in the layout
	cfg, _ := img.ConfigFile()
	var diffIDs []string
	for _, d := range cfg.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	if strings.Join(info.Layers, ",") != strings.Join(diffIDs, ",") {
		t.Errorf("skopeo inspect layers %v, want %v", info.Layers, diffIDs)
	}

	dir := filepath.Join(t.TempDir(), "oci")
	out, err = exec.Command(skopeo, "copy", "--dest-oci-accept-uncompressed-layers", "docker-archive:"+file, "oci:"+dir+":app").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, _ := lp.ImageIndex()
	im, err := ii.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("skopeo's layout: %v %v", im, err)
	}
	got, err := lp.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := got.Manifest()
	var layers []string
	for _, l := range m.Layers {
		layers = append(layers, l.Digest.String())
	}
	if strings.Join(layers, ",") != strings.Join(diffIDs, ",") {
		t.Errorf("layers after skopeo copy %v, want %v", layers, diffIDs)
	}
	gotCfg, _ := got.ConfigFile()
	if gotCfg == nil || len(gotCfg.RootFS.DiffIDs) != len(diffIDs) {
		t.Errorf("config after skopeo copy: %+v", gotCfg)
	}
}

func checkLayoutImage(t *testing.T, dir string, img v1.Image) {
	t.Helper()
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	got, err := lp.Image(d)
	if err != nil {
		t.Fatalf("%s not in layout: %v", d, err)
	}
	want, _ := img.Layers()
	have, _ := got.Layers()
	var a, b []string
	for i := range want {
		x, _ := want[i].Digest()
		a = append(a, x.String())
	}
	for i := range have {
		x, _ := have[i].Digest()
		b = append(b, x.String())
	}
	sort.Strings(a)
	sort.Strings(b)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("layers %v, want %v", b, a)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Error(err)
	}
}

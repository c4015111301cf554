package oci

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Digests used as descriptor targets; their content does not matter here.
var (
	dConfig = digest.FromString("config")
	dLayer1 = digest.FromString("layer1")
	dLayer2 = digest.FromString("layer2")
	dLayer3 = digest.FromString("layer3")
	dChild1 = digest.FromString("child1")
	dChild2 = digest.FromString("child2")
	dSubj   = digest.FromString("subject")
)

const (
	mtOCIConfig    = "application/vnd.oci.image.config.v1+json"
	mtOCILayer     = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtDockerConfig = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtOCIEmpty     = "application/vnd.oci.empty.v1+json"
)

func desc(mt string, d digest.Digest, size int64) map[string]any {
	return map[string]any{"mediaType": mt, "digest": d.String(), "size": size}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ociManifest() map[string]any {
	return map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeOCIManifest,
		"config":        desc(mtOCIConfig, dConfig, 10),
		"layers": []any{
			desc(mtOCILayer, dLayer1, 100),
			desc(mtOCILayer, dLayer2, 200),
		},
		"annotations": map[string]string{"org.example": "yes"},
	}
}

func ociIndex() map[string]any {
	return map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeOCIIndex,
		"manifests": []any{
			map[string]any{"mediaType": MediaTypeOCIManifest, "digest": dChild1.String(), "size": 500,
				"platform": map[string]any{"os": "linux", "architecture": "amd64"}},
			map[string]any{"mediaType": MediaTypeOCIManifest, "digest": dChild2.String(), "size": 501,
				"platform": map[string]any{"os": "linux", "architecture": "arm64", "variant": "v8"}},
		},
	}
}

func dockerManifest() map[string]any {
	return map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeDockerManifest,
		"config":        desc(mtDockerConfig, dConfig, 10),
		"layers":        []any{desc(mtDockerLayer, dLayer1, 100)},
	}
}

func dockerList() map[string]any {
	return map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeDockerManifestList,
		"manifests": []any{
			map[string]any{"mediaType": MediaTypeDockerManifest, "digest": dChild1.String(), "size": 500,
				"platform": map[string]any{"os": "linux", "architecture": "amd64"}},
		},
	}
}

func TestParseManifestKinds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ct        string
		doc       map[string]any
		wantMT    string
		index     bool
		blobs     []digest.Digest
		children  []digest.Digest
		artifact  string
		annotated bool
	}{
		{"oci manifest", MediaTypeOCIManifest, ociManifest(), MediaTypeOCIManifest, false,
			[]digest.Digest{dConfig, dLayer1, dLayer2}, nil, mtOCIConfig, true},
		{"oci index", MediaTypeOCIIndex, ociIndex(), MediaTypeOCIIndex, true,
			nil, []digest.Digest{dChild1, dChild2}, "", false},
		{"docker schema2", MediaTypeDockerManifest, dockerManifest(), MediaTypeDockerManifest, false,
			[]digest.Digest{dConfig, dLayer1}, nil, mtDockerConfig, false},
		{"docker manifest list", MediaTypeDockerManifestList, dockerList(), MediaTypeDockerManifestList, true,
			nil, []digest.Digest{dChild1}, "", false},
		{"content type with parameters", MediaTypeOCIManifest + "; charset=utf-8", ociManifest(), MediaTypeOCIManifest, false,
			[]digest.Digest{dConfig, dLayer1, dLayer2}, nil, mtOCIConfig, true},
		{"no content type", "", ociManifest(), MediaTypeOCIManifest, false,
			[]digest.Digest{dConfig, dLayer1, dLayer2}, nil, mtOCIConfig, true},
		{"generic content type", "application/json", dockerManifest(), MediaTypeDockerManifest, false,
			[]digest.Digest{dConfig, dLayer1}, nil, mtDockerConfig, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := mustJSON(t, tc.doc)
			m, err := ParseManifest(tc.ct, payload, digest.SHA256)
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			if m.MediaType != tc.wantMT {
				t.Errorf("MediaType = %q, want %q", m.MediaType, tc.wantMT)
			}
			if m.IsIndex() != tc.index {
				t.Errorf("IsIndex = %v, want %v", m.IsIndex(), tc.index)
			}
			if m.Digest != digest.FromBytes(payload) {
				t.Errorf("Digest = %s, want sha256 of the payload", m.Digest)
			}
			if string(m.Payload) != string(payload) {
				t.Error("Payload must be the exact bytes pushed")
			}
			var blobs, children []digest.Digest
			for _, b := range m.Blobs() {
				blobs = append(blobs, b.Digest)
			}
			for _, c := range m.Manifests {
				children = append(children, c.Digest)
			}
			if !reflect.DeepEqual(blobs, tc.blobs) {
				t.Errorf("Blobs() = %v, want %v", blobs, tc.blobs)
			}
			if !reflect.DeepEqual(children, tc.children) {
				t.Errorf("Manifests = %v, want %v", children, tc.children)
			}
			if m.ArtifactType != tc.artifact {
				t.Errorf("ArtifactType = %q, want %q", m.ArtifactType, tc.artifact)
			}
			if tc.index {
				if m.Config != nil || m.Layers != nil {
					t.Error("an index has no config or layers")
				}
				if m.Manifests == nil {
					t.Error("Manifests of an index must be non-nil")
				}
			} else if m.Config == nil || m.Config.Digest != dConfig {
				t.Errorf("Config = %+v", m.Config)
			}
			if tc.annotated && m.Annotations["org.example"] != "yes" {
				t.Errorf("Annotations = %v", m.Annotations)
			}
		})
	}
}

func TestParseManifestIndexPlatforms(t *testing.T) {
	m, err := ParseManifest(MediaTypeOCIIndex, mustJSON(t, ociIndex()), digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	p := m.Manifests[1].Platform
	if p == nil || p.OS != "linux" || p.Architecture != "arm64" || p.Variant != "v8" {
		t.Fatalf("platform = %+v", p)
	}
}

func TestParseManifestEmptyIndex(t *testing.T) {
	doc := map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": []any{}}
	m, err := ParseManifest(MediaTypeOCIIndex, mustJSON(t, doc), digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if m.Manifests == nil || len(m.Manifests) != 0 || m.Blobs() != nil {
		t.Fatalf("empty index: Manifests=%v Blobs=%v", m.Manifests, m.Blobs())
	}
	// An index that omits "manifests" altogether still gets a non-nil list.
	doc = map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex}
	m, err = ParseManifest(MediaTypeOCIIndex, mustJSON(t, doc), digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if m.Manifests == nil {
		t.Fatal("Manifests must be non-nil for an index")
	}
}

func TestParseManifestSHA512(t *testing.T) {
	payload := mustJSON(t, ociManifest())
	m, err := ParseManifest(MediaTypeOCIManifest, payload, digest.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != digest.SHA512.FromBytes(payload) {
		t.Fatalf("Digest = %s, want the sha512 of the payload", m.Digest)
	}
	// An unavailable algorithm falls back to sha256.
	m, err = ParseManifest(MediaTypeOCIManifest, payload, digest.Algorithm("nope"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest != digest.FromBytes(payload) {
		t.Fatalf("Digest = %s, want the sha256 fallback", m.Digest)
	}
}

func TestParseManifestInferredMediaType(t *testing.T) {
	// The OCI image spec lets mediaType be omitted; the shape decides,
	// and the Content-Type where the shape does not.
	for _, tc := range []struct {
		name        string
		doc         map[string]any
		contentType string
		want        string
	}{
		{"image manifest", ociManifest(), "", MediaTypeOCIManifest},
		{"index", ociIndex(), "application/json", MediaTypeOCIIndex},
		{"Content-Type decides", dockerManifest(), MediaTypeDockerManifest, MediaTypeDockerManifest},
	} {
		delete(tc.doc, "mediaType")
		m, err := ParseManifest(tc.contentType, mustJSON(t, tc.doc), digest.SHA256)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.MediaType != tc.want {
			t.Fatalf("%s: inferred %q, want %q", tc.name, m.MediaType, tc.want)
		}
	}
}

func TestParseManifestArtifacts(t *testing.T) {
	t.Run("artifactType and subject", func(t *testing.T) {
		doc := map[string]any{
			"schemaVersion": 2,
			"mediaType":     MediaTypeOCIManifest,
			"artifactType":  "application/vnd.example.sbom+json",
			"config":        desc(mtOCIEmpty, digest.FromString("{}"), 2),
			"layers":        []any{desc("application/spdx+json", dLayer1, 42)},
			"subject":       desc(MediaTypeOCIManifest, dSubj, 123),
			"annotations":   map[string]string{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
		}
		m, err := ParseManifest(MediaTypeOCIManifest, mustJSON(t, doc), digest.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != "application/vnd.example.sbom+json" {
			t.Errorf("ArtifactType = %q", m.ArtifactType)
		}
		if m.Subject == nil || m.Subject.Digest != dSubj || m.Subject.Size != 123 {
			t.Errorf("Subject = %+v", m.Subject)
		}
		if m.Annotations["org.opencontainers.image.created"] == "" {
			t.Errorf("Annotations = %v", m.Annotations)
		}
	})
	t.Run("artifactType falls back to config media type", func(t *testing.T) {
		doc := map[string]any{
			"schemaVersion": 2,
			"mediaType":     MediaTypeOCIManifest,
			"config":        desc("application/vnd.example.signature.config+json", dConfig, 2),
			"layers":        []any{},
			"subject":       desc(MediaTypeOCIManifest, dSubj, 123),
		}
		m, err := ParseManifest(MediaTypeOCIManifest, mustJSON(t, doc), digest.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != "application/vnd.example.signature.config+json" {
			t.Errorf("ArtifactType = %q, want the config media type", m.ArtifactType)
		}
	})
	t.Run("index with artifactType and subject", func(t *testing.T) {
		doc := ociIndex()
		doc["artifactType"] = "application/vnd.example.bundle"
		doc["subject"] = desc(MediaTypeOCIIndex, dSubj, 7)
		m, err := ParseManifest(MediaTypeOCIIndex, mustJSON(t, doc), digest.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != "application/vnd.example.bundle" || m.Subject == nil || m.Subject.Digest != dSubj {
			t.Errorf("ArtifactType = %q Subject = %+v", m.ArtifactType, m.Subject)
		}
	})
	t.Run("index without artifactType has none", func(t *testing.T) {
		m, err := ParseManifest(MediaTypeOCIIndex, mustJSON(t, ociIndex()), digest.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != "" {
			t.Errorf("ArtifactType = %q, want empty", m.ArtifactType)
		}
	})
}

func TestManifestBlobsOrder(t *testing.T) {
	doc := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeDockerManifest,
		"config":        desc(mtDockerConfig, dConfig, 10),
		"layers": []any{
			desc(mtDockerLayer, dLayer3, 1),
			// A foreign layer with URLs lives elsewhere: not required here.
			map[string]any{"mediaType": MediaTypeDockerForeignLayer, "digest": dLayer1.String(), "size": 5,
				"urls": []string{"https://example.com/layer"}},
			desc(mtDockerLayer, dLayer2, 2),
			// A foreign layer without URLs must be held by the registry.
			desc(MediaTypeDockerForeignLayer, dChild1, 3),
			map[string]any{"mediaType": MediaTypeOCINondistributableG, "digest": dChild2.String(), "size": 5,
				"urls": []string{"https://example.com/nd"}},
			map[string]any{"mediaType": MediaTypeOCINondistributable, "digest": dSubj.String(), "size": 5,
				"urls": []string{"https://example.com/nd"}},
			map[string]any{"mediaType": MediaTypeOCINondistributableZ, "digest": digest.FromString("z").String(), "size": 5,
				"urls": []string{"https://example.com/nd"}},
			// An ordinary layer with URLs is still a blob the registry needs.
			map[string]any{"mediaType": mtOCILayer, "digest": dLayer1.String(), "size": 5,
				"urls": []string{"https://example.com/normal"}},
		},
	}
	m, err := ParseManifest("", mustJSON(t, doc), digest.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	for _, b := range m.Blobs() {
		got = append(got, b.Digest)
	}
	want := []digest.Digest{dConfig, dLayer3, dLayer2, dChild1, dLayer1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Blobs() = %v\nwant      %v", got, want)
	}
	if len(m.Layers) != 8 {
		t.Fatalf("Layers has %d entries, want all 8", len(m.Layers))
	}
}

func TestParseManifestInvalid(t *testing.T) {
	mod := func(base func() map[string]any, f func(map[string]any)) []byte {
		d := base()
		f(d)
		return mustJSON(t, d)
	}
	for _, tc := range []struct {
		name    string
		ct      string
		payload []byte
	}{
		{"empty body", MediaTypeOCIManifest, nil},
		{"not json", MediaTypeOCIManifest, []byte("not json")},
		{"truncated json", MediaTypeOCIManifest, mustJSON(t, ociManifest())[:40]},
		{"json array", MediaTypeOCIManifest, []byte(`[]`)},
		{"json string", MediaTypeOCIManifest, []byte(`"manifest"`)},
		{"json null", MediaTypeOCIManifest, []byte(`null`)},
		{"trailing garbage", MediaTypeOCIManifest, append(mustJSON(t, ociManifest()), []byte("}")...)},
		{"schemaVersion is a string", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["schemaVersion"] = "2" })},
		{"content type mismatch", MediaTypeOCIIndex, mustJSON(t, ociManifest())},
		{"content type mismatch docker/oci", MediaTypeDockerManifest, mustJSON(t, ociManifest())},
		{"content type mismatch list/index", MediaTypeDockerManifestList, mustJSON(t, ociIndex())},
		{"schema1 content type", MediaTypeDockerSchema1, []byte(`{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}`)},
		{"schema1 signed content type", MediaTypeDockerSchema1Signed, []byte(`{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}`)},
		{"schema1 by shape", "", []byte(`{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[{"blobSum":"` + dLayer1.String() + `"}]}`)},
		{"schema1 mediaType in body", "", []byte(`{"schemaVersion":1,"mediaType":"` + MediaTypeDockerSchema1 + `"}`)},
		{"schema1 fsLayers with schemaVersion 2", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["fsLayers"] = []any{} })},
		{"schemaVersion missing", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { delete(d, "schemaVersion") })},
		{"schemaVersion 1", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["schemaVersion"] = 1 })},
		{"schemaVersion 3", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["schemaVersion"] = 3 })},
		{"missing config", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { delete(d, "config") })},
		{"missing config docker", MediaTypeDockerManifest, mod(dockerManifest, func(d map[string]any) { delete(d, "config") })},
		{"null config", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["config"] = nil })},
		{"config is a string", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["config"] = "x" })},
		{"image with manifests", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["manifests"] = []any{} })},
		{"index with config", MediaTypeOCIIndex, mod(ociIndex, func(d map[string]any) { d["config"] = desc(mtOCIConfig, dConfig, 1) })},
		{"index with layers", MediaTypeOCIIndex, mod(ociIndex, func(d map[string]any) { d["layers"] = []any{} })},
		{"no media type and no shape", "", []byte(`{"schemaVersion":2}`)},
		{"unknown content type and no shape", "text/plain", []byte(`{"schemaVersion":2}`)},
		{"config digest missing", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["config"] = map[string]any{"mediaType": mtOCIConfig, "size": 1}
		})},
		{"config digest bad hex", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["config"] = map[string]any{"mediaType": mtOCIConfig, "digest": "sha256:" + strings.Repeat("z", 64), "size": 1}
		})},
		{"config digest uppercase", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["config"] = map[string]any{"mediaType": mtOCIConfig, "digest": strings.ToUpper(dConfig.String()), "size": 1}
		})},
		{"config digest short", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["config"] = map[string]any{"mediaType": mtOCIConfig, "digest": dConfig.String()[:20], "size": 1}
		})},
		{"config digest unknown algorithm", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["config"] = map[string]any{"mediaType": mtOCIConfig, "digest": "md5:" + strings.Repeat("a", 32), "size": 1}
		})},
		{"config digest not a string", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["config"] = map[string]any{"mediaType": mtOCIConfig, "digest": 7, "size": 1}
		})},
		{"config negative size", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["config"] = desc(mtOCIConfig, dConfig, -1) })},
		{"config bad media type", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["config"] = desc("not a media type", dConfig, 1) })},
		{"layer bad digest", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["layers"] = []any{desc(mtOCILayer, dLayer1, 1), map[string]any{"mediaType": mtOCILayer, "digest": "sha256:abc", "size": 1}}
		})},
		{"layer negative size", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["layers"] = []any{desc(mtOCILayer, dLayer1, 1), desc(mtOCILayer, dLayer2, -5)}
		})},
		{"layer size not an integer", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["layers"] = []any{map[string]any{"mediaType": mtOCILayer, "digest": dLayer1.String(), "size": 1.5}}
		})},
		{"layers is an object", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) { d["layers"] = map[string]any{} })},
		{"index child bad digest", MediaTypeOCIIndex, mod(ociIndex, func(d map[string]any) {
			d["manifests"] = []any{map[string]any{"mediaType": MediaTypeOCIManifest, "digest": "sha256:", "size": 1}}
		})},
		{"index child negative size", MediaTypeOCIIndex, mod(ociIndex, func(d map[string]any) {
			d["manifests"] = []any{desc(MediaTypeOCIManifest, dChild1, -1)}
		})},
		{"subject bad digest", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["subject"] = map[string]any{"mediaType": MediaTypeOCIManifest, "digest": "nope", "size": 1}
		})},
		{"subject negative size", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["subject"] = desc(MediaTypeOCIManifest, dSubj, -1)
		})},
		{"subject in docker manifest", MediaTypeDockerManifest, mod(dockerManifest, func(d map[string]any) {
			d["subject"] = desc(MediaTypeOCIManifest, dSubj, 1)
		})},
		{"subject in docker list", MediaTypeDockerManifestList, mod(dockerList, func(d map[string]any) {
			d["subject"] = desc(MediaTypeOCIManifest, dSubj, 1)
		})},
		{"annotations not strings", MediaTypeOCIManifest, mod(ociManifest, func(d map[string]any) {
			d["annotations"] = map[string]any{"a": 1}
		})},
		{"unknown mediaType in body", "", mod(ociManifest, func(d map[string]any) { d["mediaType"] = "application/vnd.example.thing" })},
		{"config mediaType as manifest mediaType", "", mod(ociManifest, func(d map[string]any) { d["mediaType"] = mtOCIConfig })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(tc.ct, tc.payload, digest.SHA256)
			if err == nil {
				t.Fatalf("accepted as %q: %s", m.MediaType, tc.payload)
			}
			wantCode(t, err, CodeManifestInvalid)
		})
	}
}

func TestIsManifestMediaType(t *testing.T) {
	for _, mt := range []string{MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList} {
		if !IsManifestMediaType(mt) {
			t.Errorf("%s is a manifest media type", mt)
		}
	}
	for _, mt := range []string{"", "application/json", MediaTypeDockerSchema1, MediaTypeDockerSchema1Signed, mtOCIConfig} {
		if IsManifestMediaType(mt) {
			t.Errorf("%q is not a manifest media type", mt)
		}
	}
}

func TestAcceptsMediaType(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		mt     string
		want   bool
	}{
		{nil, MediaTypeOCIIndex, true},
		{[]string{MediaTypeOCIManifest}, MediaTypeOCIManifest, true},
		{[]string{MediaTypeOCIManifest}, MediaTypeOCIIndex, false},
		{[]string{MediaTypeOCIManifest + ", " + MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{[]string{MediaTypeDockerManifest, MediaTypeOCIIndex + ";q=0.5"}, MediaTypeOCIIndex, true},
		{[]string{"*/*"}, MediaTypeDockerManifestList, true},
		{[]string{"application/*"}, MediaTypeDockerManifestList, true},
		{[]string{"application/json"}, MediaTypeOCIManifest, true},
		{[]string{""}, MediaTypeOCIManifest, true},
		{[]string{" , "}, MediaTypeOCIManifest, true},
	} {
		if got := AcceptsMediaType(tc.accept, tc.mt); got != tc.want {
			t.Errorf("AcceptsMediaType(%q, %s) = %v, want %v", tc.accept, tc.mt, got, tc.want)
		}
	}
}

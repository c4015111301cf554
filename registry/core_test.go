package registry_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// TestPutManifestValidation: what PutManifest refuses before anything is
// stored, and what it accepts, with the limits set small.
func TestPutManifestValidation(t *testing.T) {
	const repo = "team/app"
	type fixture struct {
		cfg, layer oci.Descriptor
	}
	cases := []struct {
		name        string
		ref         string
		contentType string
		payload     func(f fixture) []byte
		tags        []string
		want        oci.Code
		wantStatus  int
	}{
		{name: "valid image", ref: "v1", contentType: oci.MediaTypeOCIManifest,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
		{name: "content type with parameters", ref: "v1", contentType: oci.MediaTypeOCIManifest + "; charset=utf-8",
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
		{name: "media type inferred from the shape", ref: "v1", contentType: "",
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 2, "config": f.cfg, "layers": []oci.Descriptor{f.layer}})
			}},
		{name: "bad JSON", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(fixture) []byte { return []byte(`{"schemaVersion":2,`) }},
		{name: "not an object", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(fixture) []byte { return []byte(`[]`) }},
		{name: "schemaVersion 1", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 1, "mediaType": oci.MediaTypeOCIManifest, "config": f.cfg, "layers": []any{}})
			}},
		{name: "no schemaVersion", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"mediaType": oci.MediaTypeOCIManifest, "config": f.cfg, "layers": []any{}})
			}},
		{name: "Content-Type differs from mediaType", ref: "v1", contentType: oci.MediaTypeOCIIndex, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
		{name: "Docker Content-Type for an OCI manifest", ref: "v1", contentType: oci.MediaTypeDockerManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
		{name: "unknown mediaType", ref: "v1", contentType: "", want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/x-nope", "config": f.cfg})
			}},
		{name: "schema 1", ref: "v1", contentType: oci.MediaTypeDockerSchema1Signed, want: oci.CodeManifestInvalid,
			payload: func(fixture) []byte { return []byte(`{"schemaVersion":1,"fsLayers":[]}`) }},
		{name: "image without config", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "layers": []oci.Descriptor{f.layer}})
			}},
		{name: "image with manifests", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "config": f.cfg, "manifests": []any{}})
			}},
		{name: "index with layers", ref: "v1", contentType: oci.MediaTypeOCIIndex, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex, "manifests": []any{}, "layers": []oci.Descriptor{f.layer}})
			}},
		{name: "layer with a bad digest", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				bad := f.layer
				bad.Digest = "sha256:nothex"
				return imageManifest(f.cfg, bad)
			}},
		{name: "layer with a negative size", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				bad := f.layer
				bad.Size = -1
				return imageManifest(f.cfg, bad)
			}},
		{name: "subject on a Docker manifest", ref: "v1", contentType: oci.MediaTypeDockerManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte {
				return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeDockerManifest, "config": f.cfg, "layers": []any{}, "subject": f.cfg})
			}},
		{name: "over the size limit", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid, wantStatus: http.StatusRequestEntityTooLarge,
			payload: func(f fixture) []byte {
				return imageManifestWith(map[string]any{"annotations": map[string]string{"pad": strings.Repeat("x", 2048)}}, f.cfg)
			}},
		{name: "over the reference limit", ref: "v1", contentType: oci.MediaTypeOCIManifest, want: oci.CodeManifestInvalid,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer, f.layer, f.layer) }},
		{name: "at the reference limit", ref: "v1", contentType: oci.MediaTypeOCIManifest,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer, f.layer) }},
		{name: "digest reference that does not match", ref: digest.FromString("other").String(), contentType: oci.MediaTypeOCIManifest, want: oci.CodeDigestInvalid,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
		{name: "extra tag that is invalid", ref: "", contentType: oci.MediaTypeOCIManifest, tags: []string{"ok", "-bad"}, want: oci.CodeTagInvalid,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
		{name: "tag reference that is invalid", ref: "!bad", contentType: oci.MediaTypeOCIManifest, want: oci.CodeTagInvalid,
			payload: func(f fixture) []byte { return imageManifest(f.cfg, f.layer) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{MaxManifestBytes: 1024, MaxManifestReferences: 3}, false)
			f := fixture{cfg: e.blob(repo, configType, `{}`), layer: e.blob(repo, layerType, "layer")}
			payload := tc.payload(f)
			ref := oci.Reference{Tag: tc.ref}
			switch {
			case tc.ref == "": // by its own digest
				ref = oci.Reference{Digest: digest.FromBytes(payload)}
			case strings.Contains(tc.ref, ":"):
				ref = oci.Reference{Digest: digest.Digest(tc.ref)}
			}
			m, err := e.reg.PutManifest(e.ctx, repo, ref, tc.contentType, payload, tc.tags...)
			wantCode(t, "put", err, tc.want)
			if tc.wantStatus != 0 {
				if got := oci.AsError(err).Status; got != tc.wantStatus {
					t.Errorf("status %d, want %d", got, tc.wantStatus)
				}
			}
			d := digest.FromBytes(payload)
			_, getErr := e.reg.Manifest(e.ctx, repo, oci.Reference{Digest: d})
			tags, tagsErr := e.reg.Tags(e.ctx, repo, "", -1)
			if tagsErr != nil {
				t.Fatal(tagsErr)
			}
			if tc.want != "" {
				if getErr == nil || len(tags) != 0 {
					t.Errorf("a refused manifest was stored (get: %v, tags %q)", getErr, tags)
				}
				return
			}
			if m.Digest != d || getErr != nil {
				t.Errorf("stored digest %s (get: %v), want %s", m.Digest, getErr, d)
			}
		})
	}
}

// TestIndexReferenceLimit: an index has no config, so its children alone
// count against the limit (an index of exactly the limit is accepted).
func TestIndexReferenceLimit(t *testing.T) {
	const repo = "team/app"
	for _, tc := range []struct {
		children int
		want     oci.Code
	}{{2, ""}, {3, ""}, {4, oci.CodeManifestInvalid}} {
		t.Run(fmt.Sprint(tc.children), func(t *testing.T) {
			e := newEnv(t, registry.Options{MaxManifestReferences: 3}, false)
			var kids []oci.Descriptor
			for i := range tc.children {
				kids = append(kids, e.push(repo, fmt.Sprint("c", i), e.image(repo, fmt.Sprint("child", i), 0)))
			}
			_, err := e.reg.PutManifest(e.ctx, repo, oci.Reference{Tag: "multi"}, oci.MediaTypeOCIIndex, index(kids...))
			wantCode(t, "put index", err, tc.want)
		})
	}
}

// TestManifestReferences: every blob and child a manifest names must be in
// the repository itself; the answer lists what is missing.
func TestManifestReferences(t *testing.T) {
	const repo, other = "team/app", "team/other"
	unknown := func(i int) oci.Descriptor {
		return oci.Descriptor{MediaType: layerType, Digest: digest.FromString(fmt.Sprint("absent ", i)), Size: 1}
	}
	cases := []struct {
		name        string
		payload     func(e *env) []byte
		want        oci.Code
		wantMissing []digest.Digest // in the order listed
		wantCount   int
	}{
		{name: "all present", payload: func(e *env) []byte { return e.image(repo, "a", 2) }},
		{name: "missing config", payload: func(e *env) []byte {
			return imageManifest(oci.Descriptor{MediaType: configType, Digest: unknown(0).Digest, Size: 1}, e.blob(repo, layerType, "l"))
		}, want: oci.CodeManifestBlobUnknown, wantMissing: []digest.Digest{unknown(0).Digest}, wantCount: 1},
		{name: "two missing layers", payload: func(e *env) []byte {
			return imageManifest(e.blob(repo, configType, "{}"), unknown(1), e.blob(repo, layerType, "l"), unknown(2))
		}, want: oci.CodeManifestBlobUnknown, wantMissing: []digest.Digest{unknown(1).Digest, unknown(2).Digest}, wantCount: 2},
		{name: "twelve missing: ten listed", payload: func(e *env) []byte {
			var ls []oci.Descriptor
			for i := range 12 {
				ls = append(ls, unknown(i))
			}
			return imageManifest(e.blob(repo, configType, "{}"), ls...)
		}, want: oci.CodeManifestBlobUnknown, wantCount: 12, wantMissing: func() []digest.Digest {
			var ds []digest.Digest
			for i := range 10 {
				ds = append(ds, unknown(i).Digest)
			}
			return ds
		}()},
		{name: "a layer of another repository", payload: func(e *env) []byte {
			l := e.blob(other, layerType, "theirs")
			return imageManifest(e.blob(repo, configType, "{}"), l)
		}, want: oci.CodeManifestBlobUnknown, wantMissing: []digest.Digest{digest.FromString("theirs")}, wantCount: 1},
		{name: "the same layer twice", payload: func(e *env) []byte {
			l := e.blob(repo, layerType, "l")
			return imageManifest(e.blob(repo, configType, "{}"), l, l)
		}},
		{name: "a foreign layer with URLs need not be held", payload: func(e *env) []byte {
			f := unknown(3)
			f.MediaType, f.URLs = oci.MediaTypeOCINondistributableG, []string{"https://example.com/layer"}
			return imageManifest(e.blob(repo, configType, "{}"), f)
		}},
		{name: "index with its children", payload: func(e *env) []byte {
			return index(e.push(repo, "a", e.image(repo, "a", 1)), e.push(repo, "b", e.image(repo, "b", 1)))
		}},
		{name: "index with a missing child", payload: func(e *env) []byte {
			return index(e.push(repo, "a", e.image(repo, "a", 1)), oci.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: unknown(4).Digest, Size: 9})
		}, want: oci.CodeManifestBlobUnknown, wantMissing: []digest.Digest{unknown(4).Digest}, wantCount: 1},
		{name: "index with a child of another repository", payload: func(e *env) []byte {
			return index(e.push(other, "a", e.image(other, "a", 1)))
		}, want: oci.CodeManifestBlobUnknown, wantCount: 1},
		{name: "index with no children", payload: func(*env) []byte { return index() }},
		{name: "missing subject is allowed", payload: func(e *env) []byte {
			return imageManifestWith(map[string]any{"subject": oci.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: unknown(5).Digest, Size: 5}},
				e.blob(repo, configType, "{}"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{}, false)
			payload := tc.payload(e)
			_, err := e.reg.PutManifest(e.ctx, repo, oci.Reference{Tag: "latest"}, mediaTypeOf(t, payload), payload)
			wantCode(t, "put", err, tc.want)
			if tc.want == "" {
				if _, err := e.resolve(repo, "latest"); err != nil {
					t.Fatalf("pushed manifest not served: %v", err)
				}
				return
			}
			if _, err := e.resolve(repo, "latest"); codeOf(err) != oci.CodeManifestUnknown {
				t.Errorf("refused manifest: get says %v", err)
			}
			det := detail(t, err)
			if n := det["missingCount"]; n != float64(tc.wantCount) {
				t.Errorf("missingCount %v, want %d", n, tc.wantCount)
			}
			listed, _ := det["missing"].([]any)
			if tc.wantMissing != nil {
				if len(listed) != len(tc.wantMissing) {
					t.Fatalf("missing lists %v, want %v", listed, tc.wantMissing)
				}
				for i, d := range tc.wantMissing {
					if listed[i] != d.String() {
						t.Errorf("missing[%d] = %v, want %s", i, listed[i], d)
					}
				}
				if det["digest"] != tc.wantMissing[0].String() {
					t.Errorf("detail digest %v, want %s", det["digest"], tc.wantMissing[0])
				}
			}
		})
	}
}

// TestTagMoves: a tag points at one manifest at a time; manifests a tag
// leaves stay by digest; deletes by tag and by digest differ.
func TestTagMoves(t *testing.T) {
	const repo = "team/app"
	type state struct {
		one, two oci.Descriptor
	}
	cases := []struct {
		name  string
		steps func(e *env, s state) error
		want  oci.Code
		tags  []string                             // the repository's tags after
		at    map[string]func(state) digest.Digest // tag or digest -> what it resolves to (nil fn: unknown)
	}{
		{name: "move a tag", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			_, _ = e.resolve(repo, "v1") // cached now: the move must not be hidden by it
			e.push(repo, "v1", s.two.Data)
			return nil
		}, tags: []string{"v1"}, at: map[string]func(state) digest.Digest{
			"v1":  func(s state) digest.Digest { return s.two.Digest },
			"one": func(s state) digest.Digest { return s.one.Digest },
		}},
		{name: "push the same manifest under a second tag", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			e.push(repo, "latest", s.one.Data)
			return nil
		}, tags: []string{"latest", "v1"}, at: map[string]func(state) digest.Digest{
			"v1":     func(s state) digest.Digest { return s.one.Digest },
			"latest": func(s state) digest.Digest { return s.one.Digest },
		}},
		{name: "by digest with extra tags", steps: func(e *env, s state) error {
			e.push(repo, s.one.Digest.String(), s.one.Data, "a", "b")
			return nil
		}, tags: []string{"a", "b"}, at: map[string]func(state) digest.Digest{
			"a": func(s state) digest.Digest { return s.one.Digest },
			"b": func(s state) digest.Digest { return s.one.Digest },
		}},
		{name: "by digest untagged", steps: func(e *env, s state) error {
			e.push(repo, s.one.Digest.String(), s.one.Data)
			return nil
		}, tags: []string{}, at: map[string]func(state) digest.Digest{"one": func(s state) digest.Digest { return s.one.Digest }}},
		{name: "delete a tag: the manifest stays", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			e.push(repo, "v2", s.one.Data)
			_, _ = e.resolve(repo, "v1")
			return e.reg.DeleteManifest(e.ctx, repo, oci.Reference{Tag: "v1"})
		}, tags: []string{"v2"}, at: map[string]func(state) digest.Digest{
			"v1":  nil,
			"one": func(s state) digest.Digest { return s.one.Digest },
		}},
		{name: "delete an unknown tag", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			return e.reg.DeleteManifest(e.ctx, repo, oci.Reference{Tag: "v9"})
		}, want: oci.CodeManifestUnknown, tags: []string{"v1"}},
		{name: "delete by digest removes its tags", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			e.push(repo, "v2", s.one.Data)
			e.push(repo, "v3", s.two.Data)
			_, _ = e.resolve(repo, "v1")
			return e.reg.DeleteManifest(e.ctx, repo, oci.Reference{Digest: s.one.Digest})
		}, tags: []string{"v3"}, at: map[string]func(state) digest.Digest{
			"v1": nil, "v2": nil, "one": nil,
			"v3": func(s state) digest.Digest { return s.two.Digest },
		}},
		{name: "delete an unknown digest", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			return e.reg.DeleteManifest(e.ctx, repo, oci.Reference{Digest: s.two.Digest})
		}, want: oci.CodeManifestUnknown, tags: []string{"v1"}},
		{name: "move a tag to a manifest of another repository", steps: func(e *env, s state) error {
			e.push(repo, "v1", s.one.Data)
			other := e.image("team/other", "other", 1)
			e.push("team/other", "v1", other)
			_, err := e.reg.PutManifest(e.ctx, repo, oci.Reference{Tag: "v1"}, oci.MediaTypeOCIManifest, other)
			return err
		}, want: oci.CodeManifestBlobUnknown, tags: []string{"v1"}, at: map[string]func(state) digest.Digest{
			"v1": func(s state) digest.Digest { return s.one.Digest },
		}},
		{name: "invalid tag", steps: func(e *env, s state) error {
			_, err := e.reg.PutManifest(e.ctx, repo, oci.Reference{Tag: "a/b"}, oci.MediaTypeOCIManifest, s.one.Data)
			return err
		}, want: oci.CodeTagInvalid, tags: []string{}},
		{name: "tag too long", steps: func(e *env, s state) error {
			_, err := e.reg.PutManifest(e.ctx, repo, oci.Reference{Tag: strings.Repeat("t", oci.MaxTagLength+1)}, oci.MediaTypeOCIManifest, s.one.Data)
			return err
		}, want: oci.CodeTagInvalid, tags: []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{}, false)
			one, two := e.image(repo, "one", 1), e.image(repo, "two", 2)
			s := state{
				one: oci.Descriptor{Digest: digest.FromBytes(one), Data: one},
				two: oci.Descriptor{Digest: digest.FromBytes(two), Data: two},
			}
			wantCode(t, "steps", tc.steps(e, s), tc.want)
			tags, err := e.reg.Tags(e.ctx, repo, "", -1)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(tags) != fmt.Sprint(tc.tags) {
				t.Errorf("tags %q, want %q", tags, tc.tags)
			}
			for ref, want := range tc.at {
				r := oci.Reference{Tag: ref}
				if ref == "one" {
					r = oci.Reference{Digest: s.one.Digest}
				}
				rec, err := e.reg.Manifest(e.ctx, repo, r)
				if want == nil {
					wantCode(t, "get "+ref, err, oci.CodeManifestUnknown)
					continue
				}
				if err != nil || rec.Digest != want(s) {
					t.Errorf("%s resolves to %s (%v), want %s", ref, rec.Digest, err, want(s))
				}
			}
		})
	}
}

// TestTagsListing: pagination of the tag list and the unknown repository.
func TestTagsListing(t *testing.T) {
	e := newEnv(t, registry.Options{}, false)
	m := e.image("team/app", "x", 0)
	for _, tag := range []string{"b", "a", "d", "c"} {
		e.push("team/app", tag, m)
	}
	for _, tc := range []struct {
		last string
		n    int
		want string
	}{{"", -1, "[a b c d]"}, {"", 2, "[a b]"}, {"b", 2, "[c d]"}, {"d", 5, "[]"}, {"", 0, "[]"}} {
		got, err := e.reg.Tags(e.ctx, "team/app", tc.last, tc.n)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("Tags(last=%q, n=%d) = %v (%v), want %s", tc.last, tc.n, got, err, tc.want)
		}
	}
	_, err := e.reg.Tags(e.ctx, "team/none", "", -1)
	wantCode(t, "tags of an unknown repository", err, oci.CodeNameUnknown)
}

// TestReferrers: manifests with a subject are listed for it, filtered by
// artifactType, whether or not the subject exists.
func TestReferrers(t *testing.T) {
	const repo = "team/app"
	e := newEnv(t, registry.Options{}, false)
	subject := e.push(repo, "v1", e.image(repo, "subject", 1))
	absent := oci.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: digest.FromString("not pushed"), Size: 10}
	empty := e.blob(repo, "application/vnd.oci.empty.v1+json", "{}")
	refer := func(to oci.Descriptor, artifactType string, ann map[string]string) oci.Descriptor {
		extra := map[string]any{"subject": to, "annotations": ann}
		if artifactType != "" {
			extra["artifactType"] = artifactType
		}
		return e.push(repo, digestOfImage(extra, empty).String(), imageManifestWith(extra, empty))
	}
	sbom := refer(subject, "application/spdx+json", map[string]string{"org.example": "sbom"})
	sig := refer(subject, "application/vnd.dev.sigstore", nil)
	plain := refer(subject, "", nil) // artifactType falls back to the config's media type
	orphan := refer(absent, "application/spdx+json", nil)
	e.push("team/other", "x", e.image("team/other", "o", 0))

	cases := []struct {
		name         string
		subject      digest.Digest
		artifactType string
		want         []digest.Digest
	}{
		{"all of a subject", subject.Digest, "", []digest.Digest{sbom.Digest, sig.Digest, plain.Digest}},
		{"filtered", subject.Digest, "application/spdx+json", []digest.Digest{sbom.Digest}},
		{"filter on the config type", subject.Digest, "application/vnd.oci.empty.v1+json", []digest.Digest{plain.Digest}},
		{"filter matching none", subject.Digest, "application/x-none", nil},
		{"a subject not pushed", absent.Digest, "", []digest.Digest{orphan.Digest}},
		{"a manifest nobody refers to", sbom.Digest, "", nil},
		{"a digest unknown everywhere", digest.FromString("nothing"), "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.reg.Referrers(e.ctx, repo, tc.subject, tc.artifactType)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Error("nil list: the referrers API answers an empty index, not null")
			}
			var ds []digest.Digest
			for _, d := range got {
				ds = append(ds, d.Digest)
			}
			if fmt.Sprint(ds) != fmt.Sprint(tc.want) {
				t.Errorf("referrers %v, want %v", ds, tc.want)
			}
		})
	}

	all, _ := e.reg.Referrers(e.ctx, repo, subject.Digest, "")
	if d := all[0]; d.MediaType != oci.MediaTypeOCIManifest || d.Size != sbom.Size || d.ArtifactType != "application/spdx+json" || d.Annotations["org.example"] != "sbom" {
		t.Errorf("descriptor %+v: want the referrer's media type, size, artifactType and annotations", d)
	}
	if got, _ := e.reg.Referrers(e.ctx, "team/other", subject.Digest, ""); len(got) != 0 {
		t.Errorf("another repository lists %d referrers of team/app's manifest", len(got))
	}
	// The subject arriving later changes nothing; the referrer leaving does.
	e.push(repo, "absent", e.image(repo, "late", 0))
	if err := e.reg.DeleteManifest(e.ctx, repo, oci.Reference{Digest: sig.Digest}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.reg.Referrers(e.ctx, repo, subject.Digest, ""); len(got) != 2 {
		t.Errorf("%d referrers after deleting one of three", len(got))
	}
}

func digestOfImage(extra map[string]any, cfg oci.Descriptor) digest.Digest {
	return digest.FromBytes(imageManifestWith(extra, cfg))
}

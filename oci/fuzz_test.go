package oci

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// specNameRegexp is the repository name grammar as the distribution spec
// writes it. ValidateName is hand-written for speed and must agree with it.
var specNameRegexp = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// specTagRegexp is the spec's tag grammar.
var specTagRegexp = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"a", "library/ubuntu", "a.b_c__d-e--f/g", "a..b", "a___b", "a/", "/a", "a//b",
		"A", "a-", "_a", "x/manifests/y", "a._b", "a-_b", "0-0", strings.Repeat("a", 255),
		strings.Repeat("a", 256), strings.Repeat("ab/", 84) + "abc", "a\nb", "a/b\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		want := len(name) <= MaxNameLength && specNameRegexp.MatchString(name)
		if (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v; the spec's regexp says valid=%v", name, err, want)
		}
		if err != nil {
			if e := AsError(err); e.Code != CodeNameInvalid || e.Status != 400 {
				t.Fatalf("ValidateName(%q) = %v, want NAME_INVALID 400", name, err)
			}
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		"sha256:" + hex64, "sha512:" + hex128, "sha256:" + strings.ToUpper(hex64), "sha256:",
		"sha384:" + hex64 + hex64[:32], "md5:abc", ":", "", "sha256:" + hex64[:63] + "\n",
		"sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			if e := AsError(err); e.Code != CodeDigestInvalid || e.Status != 400 {
				t.Fatalf("ParseDigest(%q) = %v, want DIGEST_INVALID 400", s, err)
			}
			// Input is cut to 300 bytes and quoted; %q writes a byte as at
			// most 4 characters (\xNN), so the message stays bounded.
			if len(err.Error()) > 4*300+200 {
				t.Fatalf("error for %d-byte input is %d bytes long", len(s), len(err.Error()))
			}
			return
		}
		if string(d) != s {
			t.Fatalf("ParseDigest(%q) = %q; a valid digest is returned unchanged", s, d)
		}
		alg, enc, ok := strings.Cut(s, ":")
		if !ok {
			t.Fatalf("ParseDigest accepted %q without a colon", s)
		}
		switch alg {
		case "sha256":
			ok = len(enc) == 64
		case "sha512":
			ok = len(enc) == 128
		default:
			ok = false
		}
		for i := 0; ok && i < len(enc); i++ {
			ok = (enc[i] >= '0' && enc[i] <= '9') || (enc[i] >= 'a' && enc[i] <= 'f')
		}
		if !ok {
			t.Fatalf("ParseDigest accepted %q", s)
		}
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"latest", "v1.0", "_x", ".x", "-x", "sha256:" + hex64, "sha512:" + hex128, "a:b", ":",
		strings.Repeat("t", 128), strings.Repeat("t", 129), "", "a/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s)
		if err != nil {
			code := AsError(err).Code
			if code != CodeTagInvalid && code != CodeDigestInvalid {
				t.Fatalf("ParseReference(%q) = %v, want TAG_INVALID or DIGEST_INVALID", s, err)
			}
			if strings.Contains(s, ":") != (code == CodeDigestInvalid) {
				t.Fatalf("ParseReference(%q) = %v: a colon means digest, its absence a tag", s, err)
			}
			if code == CodeTagInvalid && specTagRegexp.MatchString(s) {
				t.Fatalf("ParseReference(%q) refused a tag the spec allows", s)
			}
			return
		}
		if ref.String() != s {
			t.Fatalf("ParseReference(%q).String() = %q", s, ref.String())
		}
		if ref.IsDigest() {
			if ref.Tag != "" {
				t.Fatalf("%q parsed as both tag and digest", s)
			}
			if _, err := ParseDigest(string(ref.Digest)); err != nil {
				t.Fatalf("digest reference %q does not re-parse: %v", s, err)
			}
			return
		}
		if !specTagRegexp.MatchString(ref.Tag) {
			t.Fatalf("ParseReference(%q) accepted a tag the spec does not allow", s)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	seeds := []map[string]any{ociManifest(), ociIndex(), dockerManifest(), dockerList()}
	art := ociManifest()
	art["artifactType"] = "application/vnd.example+json"
	art["subject"] = desc(MediaTypeOCIManifest, dSubj, 1)
	seeds = append(seeds, art)
	for _, s := range seeds {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s["mediaType"].(string), b)
		f.Add("", b)
	}
	f.Add(MediaTypeDockerSchema1, []byte(`{"schemaVersion":1,"fsLayers":[]}`))
	f.Add("", []byte(`{"schemaVersion":2,"config":{"digest":"sha256:","size":-1}}`))
	f.Add("application/json", []byte(`{"schemaVersion":2,"manifests":null}`))
	f.Add("", []byte(`not json`))
	f.Fuzz(func(t *testing.T, contentType string, payload []byte) {
		m, err := ParseManifest(contentType, payload, digest.SHA256)
		if err != nil {
			if e := AsError(err); e.Code != CodeManifestInvalid || e.Status != 400 {
				t.Fatalf("ParseManifest error %v, want MANIFEST_INVALID 400", err)
			}
			return
		}
		if m.Digest != digest.FromBytes(payload) {
			t.Fatalf("Digest %s is not the sha256 of the payload", m.Digest)
		}
		if string(m.Payload) != string(payload) {
			t.Fatal("Payload differs from the input")
		}
		if !IsManifestMediaType(m.MediaType) {
			t.Fatalf("accepted with media type %q", m.MediaType)
		}
		check := func(what string, d Descriptor) {
			if err := d.Digest.Validate(); err != nil {
				t.Fatalf("accepted %s descriptor with invalid digest %q: %v", what, d.Digest, err)
			}
			if d.Size < 0 {
				t.Fatalf("accepted %s descriptor with size %d", what, d.Size)
			}
		}
		if m.IsIndex() {
			if m.Config != nil || m.Layers != nil || m.Manifests == nil {
				t.Fatalf("index with config %v layers %v manifests %v", m.Config, m.Layers, m.Manifests)
			}
		} else if m.Config == nil {
			t.Fatal("image manifest without config")
		}
		if m.Config != nil {
			check("config", *m.Config)
		}
		for _, d := range m.Layers {
			check("layer", d)
		}
		for _, d := range m.Manifests {
			check("manifest", d)
		}
		for _, d := range m.Blobs() {
			check("blob", d)
		}
		if m.Subject != nil {
			check("subject", *m.Subject)
		}
	})
}

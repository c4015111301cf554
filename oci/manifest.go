package oci

import (
	"encoding/json"
	"mime"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types Wharf understands as manifests.
const (
	MediaTypeOCIManifest          = v1.MediaTypeImageManifest
	MediaTypeOCIIndex             = v1.MediaTypeImageIndex
	MediaTypeDockerManifest       = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerSchema1        = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeDockerForeignLayer   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeOCINondistributable  = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	MediaTypeOCINondistributableG = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	MediaTypeOCINondistributableZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// Descriptor is the OCI content descriptor.
type Descriptor = v1.Descriptor

// Platform is the OCI platform of an index entry.
type Platform = v1.Platform

// Manifest is a parsed, validated manifest: what the registry needs to
// know to store it, check its references and answer referrers queries.
type Manifest struct {
	// MediaType is the manifest's media type (one of the four known types).
	MediaType string
	// Digest is the sha256 digest of Payload (or of the requested algorithm).
	Digest digest.Digest
	// Payload is the exact bytes as pushed; they are served back unchanged.
	Payload []byte
	// Config is the config descriptor of an image manifest, nil for an index.
	Config *Descriptor
	// Layers are the layer descriptors of an image manifest, in order.
	Layers []Descriptor
	// Manifests are the child descriptors of an index, in order.
	Manifests []Descriptor
	// Subject is the manifest this one refers to (referrers API), if any.
	Subject *Descriptor
	// ArtifactType is what the referrers API reports: the artifactType
	// field, or for an image manifest without one, the config media type.
	ArtifactType string
	// Annotations are reported by the referrers API.
	Annotations map[string]string
}

// IsIndex reports whether m is an OCI index or Docker manifest list.
func (m *Manifest) IsIndex() bool {
	return m.MediaType == MediaTypeOCIIndex || m.MediaType == MediaTypeDockerManifestList
}

// Blobs returns the descriptors of every blob the manifest references that
// the registry must hold: config first, then layers in order. Foreign
// (non-distributable) layers with URLs live elsewhere and are left out.
func (m *Manifest) Blobs() []Descriptor {
	if m.Config == nil {
		return nil
	}
	out := make([]Descriptor, 0, 1+len(m.Layers))
	out = append(out, *m.Config)
	for _, l := range m.Layers {
		if isForeign(l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

func isForeign(d Descriptor) bool {
	switch d.MediaType {
	case MediaTypeDockerForeignLayer, MediaTypeOCINondistributable, MediaTypeOCINondistributableG, MediaTypeOCINondistributableZ:
		return len(d.URLs) > 0
	}
	return false
}

// IsManifestMediaType reports whether mt is a manifest type Wharf stores.
func IsManifestMediaType(mt string) bool {
	switch mt {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// rawManifest has the union of the fields of the four manifest types.
type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
	FSLayers      json.RawMessage   `json:"fsLayers"`
}

// ParseManifest parses and validates a manifest pushed with the given
// Content-Type. The digest is computed with alg (sha256 unless the manifest
// was pushed by a digest of another algorithm).
func ParseManifest(contentType string, payload []byte, alg digest.Algorithm) (*Manifest, error) {
	var raw rawManifest
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, Errorf(CodeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	ct := contentType
	if ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			ct = mt
		}
	}
	mt := raw.MediaType
	switch {
	case mt != "" && IsManifestMediaType(ct) && ct != mt:
		return nil, Errorf(CodeManifestInvalid, "Content-Type %q does not match the manifest's mediaType %q", ct, mt)
	case mt == "":
		mt = ct
	}
	if mt == MediaTypeDockerSchema1 || mt == MediaTypeDockerSchema1Signed || raw.FSLayers != nil {
		return nil, Errorf(CodeManifestInvalid, "Docker schema 1 manifests are not supported; push schema 2 or OCI")
	}
	if raw.MediaType != "" && !IsManifestMediaType(raw.MediaType) {
		// The image spec: when mediaType is used it MUST be the manifest's
		// (or index's) own type. Only an omitted one is inferred below.
		return nil, Errorf(CodeManifestInvalid, "unsupported manifest media type %q", truncate(raw.MediaType))
	}
	if !IsManifestMediaType(mt) {
		// No usable media type: infer from the shape, as the OCI spec allows
		// for manifests that omit mediaType.
		switch {
		case raw.Manifests != nil && raw.Config == nil:
			mt = MediaTypeOCIIndex
		case raw.Config != nil:
			mt = MediaTypeOCIManifest
		default:
			return nil, Errorf(CodeManifestInvalid, "unsupported manifest media type %q", mt)
		}
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return nil, Errorf(CodeManifestInvalid, "schemaVersion must be 2")
	}
	if !alg.Available() {
		alg = digest.SHA256
	}
	m := &Manifest{
		MediaType:    mt,
		Digest:       alg.FromBytes(payload),
		Payload:      payload,
		Subject:      raw.Subject,
		ArtifactType: raw.ArtifactType,
		Annotations:  raw.Annotations,
	}
	switch mt {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		if raw.Config == nil {
			return nil, Errorf(CodeManifestInvalid, "image manifest has no config")
		}
		if raw.Manifests != nil {
			return nil, Errorf(CodeManifestInvalid, "image manifest must not have manifests")
		}
		if err := validateDescriptor("config", *raw.Config); err != nil {
			return nil, err
		}
		for _, l := range raw.Layers {
			if err := validateDescriptor("layer", l); err != nil {
				return nil, err
			}
		}
		m.Config, m.Layers = raw.Config, raw.Layers
		if m.ArtifactType == "" {
			m.ArtifactType = raw.Config.MediaType
		}
	default: // index or manifest list
		if raw.Config != nil || raw.Layers != nil {
			return nil, Errorf(CodeManifestInvalid, "index must not have config or layers")
		}
		for _, c := range raw.Manifests {
			if err := validateDescriptor("manifest", c); err != nil {
				return nil, err
			}
		}
		m.Manifests = raw.Manifests
		if m.Manifests == nil {
			m.Manifests = []Descriptor{}
		}
	}
	if m.Subject != nil {
		if mt == MediaTypeDockerManifest || mt == MediaTypeDockerManifestList {
			return nil, Errorf(CodeManifestInvalid, "subject is only allowed in OCI manifests")
		}
		if err := validateDescriptor("subject", *m.Subject); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func validateDescriptor(what string, d Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return Errorf(CodeManifestInvalid, "%s descriptor has an invalid digest %q", what, truncate(string(d.Digest)))
	}
	if d.Size < 0 {
		return Errorf(CodeManifestInvalid, "%s descriptor %s has a negative size", what, d.Digest)
	}
	if d.MediaType != "" {
		if _, _, err := mime.ParseMediaType(d.MediaType); err != nil {
			return Errorf(CodeManifestInvalid, "%s descriptor %s has an invalid mediaType %q", what, d.Digest, truncate(d.MediaType))
		}
	}
	return nil
}

// AcceptsMediaType reports whether an Accept header admits mt. An empty
// header, a wildcard or an unparseable entry admits everything: refusing a
// manifest is worse than sending one the client may not read.
func AcceptsMediaType(accept []string, mt string) bool {
	if len(accept) == 0 {
		return true
	}
	any := false
	for _, h := range accept {
		for _, part := range strings.Split(h, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			any = true
			t, _, err := mime.ParseMediaType(part)
			if err != nil || t == "*/*" || t == "application/*" || t == mt {
				return true
			}
			// Legacy clients send application/json and expect any manifest.
			if t == "application/json" {
				return true
			}
		}
	}
	return !any
}

// ParsePlatform parses "os/arch[/variant]" (the batch endpoint's platform
// parameter).
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return Platform{}, Errorf(CodeUnsupported, "platform %q: want os/arch[/variant]", truncate(s)).WithStatus(400)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// PlatformMatches reports whether have satisfies want: os and architecture
// equal, and the variant equal when want names one.
func PlatformMatches(have, want Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(want.Variant == "" || have.Variant == want.Variant)
}

package registry

import (
	"context"
	"errors"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// PutManifest validates and stores a manifest under ref (a tag, or the
// manifest's own digest) and points the extra tags at it too (the spec's
// PUT /manifests/<digest>?tag=...), all in one transaction. Every blob and
// child manifest it references must already be in the repository; the
// subject need not be.
func (r *Registry) PutManifest(ctx context.Context, repo string, ref oci.Reference, contentType string, payload []byte, tags ...string) (*oci.Manifest, error) {
	if err := r.writable(repo); err != nil {
		return nil, err
	}
	if int64(len(payload)) > r.opts.MaxManifestBytes {
		return nil, manifestTooLarge(r.opts.MaxManifestBytes)
	}
	// The store keeps any string as a tag; the grammar is checked here, so
	// no caller of the core can store a tag no client could ever name.
	if !ref.IsDigest() {
		if err := oci.ValidateTag(ref.Tag); err != nil {
			return nil, err
		}
	}
	for _, tag := range tags {
		if err := oci.ValidateTag(tag); err != nil {
			return nil, err
		}
	}
	alg := digest.Canonical
	if ref.IsDigest() {
		alg = ref.Digest.Algorithm()
	}
	m, err := oci.ParseManifest(contentType, payload, alg)
	if err != nil {
		return nil, err
	}
	if ref.IsDigest() && m.Digest != ref.Digest {
		return nil, oci.Errorf(oci.CodeDigestInvalid, "manifest has digest %s, not %s", m.Digest, ref.Digest)
	}
	n := len(m.Layers) + len(m.Manifests)
	if m.Config != nil { // an index has none
		n++
	}
	if n > r.opts.MaxManifestReferences {
		// Checked before the store is asked: each reference costs a lookup.
		return nil, oci.Errorf(oci.CodeManifestInvalid, "manifest has %d references, over the limit of %d", n, r.opts.MaxManifestReferences).
			WithDetail(map[string]int{"references": n, "limit": r.opts.MaxManifestReferences})
	}
	nm := NewManifest{
		Record: ManifestRecord{
			Digest: m.Digest, MediaType: m.MediaType, Payload: payload,
			ArtifactType: m.ArtifactType, Annotations: m.Annotations,
		},
		Tags: tags,
	}
	if ref.Tag != "" {
		nm.Tags = append([]string{ref.Tag}, tags...)
	}
	if m.Subject != nil {
		nm.Record.Subject = m.Subject.Digest
	}
	nm.Blobs = uniqueDigests(m.Blobs())
	nm.Children = uniqueDigests(m.Manifests)
	if err := r.meta.PutManifest(ctx, repo, nm); err != nil {
		var missing *MissingReferencesError
		if errors.As(err, &missing) {
			return nil, missingError(missing)
		}
		return nil, internal("put manifest", err)
	}
	r.c.gens.bump(repo)
	return m, nil
}

// manifestTooLarge is the spec's answer to an oversized manifest.
func manifestTooLarge(limit int64) *oci.Error {
	return oci.Errorf(oci.CodeManifestInvalid, "manifest exceeds the %d-byte limit", limit).WithStatus(413)
}

// ManifestTooLarge is the error for a manifest body over limit bytes
// (413 MANIFEST_INVALID), for callers that find out while reading it.
func ManifestTooLarge(limit int64) error { return manifestTooLarge(limit) }

// maxMissingListed bounds the digests a MANIFEST_BLOB_UNKNOWN error lists:
// the answer to a manifest of thousands of unknown layers stays small.
const maxMissingListed = 10

func missingError(m *MissingReferencesError) *oci.Error {
	what, list := "manifest references blob %s, unknown to this repository", m.Blobs
	if len(list) == 0 {
		what, list = "index references manifest %s, unknown to this repository", m.Manifests
	}
	return oci.Errorf(oci.CodeManifestBlobUnknown, what, list[0]).
		WithDetail(map[string]any{"digest": list[0], "missing": list[:min(len(list), maxMissingListed)], "missingCount": len(list)})
}

// uniqueDigests returns the digests of ds in order, each once.
func uniqueDigests(ds []oci.Descriptor) []digest.Digest {
	if len(ds) == 0 {
		return nil
	}
	seen := make(map[digest.Digest]struct{}, len(ds))
	out := make([]digest.Digest, 0, len(ds))
	for _, d := range ds {
		if _, ok := seen[d.Digest]; !ok {
			seen[d.Digest] = struct{}{}
			out = append(out, d.Digest)
		}
	}
	return out
}

// Manifest returns a manifest by tag or digest, from the cache when it
// can; a proxied repository's from its upstream when it must.
func (r *Registry) Manifest(ctx context.Context, repo string, ref oci.Reference) (ManifestRecord, error) {
	if rt, ok := r.cacheRoute(repo); ok {
		return r.proxyManifest(ctx, repo, rt, ref)
	}
	return r.localManifest(ctx, repo, ref)
}

func (r *Registry) localManifest(ctx context.Context, repo string, ref oci.Reference) (ManifestRecord, error) {
	key := refKey{repo, ref.String()}
	gen := r.c.gens.get(repo)
	if e, ok := r.c.manifests.Get(key); ok && e.gen == gen {
		return e.v, nil
	}
	rec, err := r.meta.Manifest(ctx, repo, ref)
	if errors.Is(err, ErrNotFound) {
		return rec, oci.ErrManifestUnknown.WithDetail(map[string]string{"reference": ref.String()})
	}
	if err != nil {
		return rec, internal("get manifest", err)
	}
	key = refKey{strings.Clone(repo), strings.Clone(key.ref)} // not the request line
	r.c.manifests.Put(key, &cached[ManifestRecord]{gen, rec})
	return rec, nil
}

// DeleteManifest deletes a tag (the manifest stays) or, by digest, the
// manifest and every tag that points at it.
func (r *Registry) DeleteManifest(ctx context.Context, repo string, ref oci.Reference) error {
	if err := r.writable(repo); err != nil {
		return err
	}
	var err error
	if ref.IsDigest() {
		err = r.meta.DeleteManifest(ctx, repo, ref.Digest)
	} else {
		err = r.meta.DeleteTag(ctx, repo, ref.Tag)
	}
	r.c.gens.bump(repo)
	if errors.Is(err, ErrNotFound) {
		return oci.ErrManifestUnknown.WithDetail(map[string]string{"reference": ref.String()})
	}
	if err != nil {
		return internal("delete manifest", err)
	}
	return nil
}

// Tags lists a repository's tags after last, at most n (n < 0: all).
func (r *Registry) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	key := tagsKey{repo, last, n}
	gen := r.c.gens.get(repo)
	if e, ok := r.c.tagLists.Get(key); ok && e.gen == gen {
		return e.v, nil
	}
	tags, err := r.meta.Tags(ctx, repo, last, n)
	if errors.Is(err, ErrNotFound) {
		return nil, oci.ErrNameUnknown.WithDetail(map[string]string{"name": repo})
	}
	if err != nil {
		return nil, internal("list tags", err)
	}
	if len(last) <= maxCachedLast {
		key = tagsKey{strings.Clone(repo), strings.Clone(last), n}
		r.c.tagLists.Put(key, cached[[]string]{gen, tags})
	}
	return tags, nil
}

// tagsKey caches tag lists under the repository generation, like
// manifests: lists are read far more often than tags move.
type tagsKey struct {
	repo, last string
	n          int
}

// Repositories lists repository names after last, at most n (n < 0: all).
func (r *Registry) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	repos, err := r.meta.Repositories(ctx, last, n)
	if err != nil {
		return nil, internal("catalog", err)
	}
	return repos, nil
}

// Referrers lists the manifests whose subject is d, keeping only those of
// artifactType when it is set.
func (r *Registry) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]oci.Descriptor, error) {
	all, err := r.meta.Referrers(ctx, repo, d)
	if err != nil {
		return nil, internal("referrers", err)
	}
	if artifactType == "" {
		return all, nil
	}
	out := all[:0]
	for _, desc := range all {
		if desc.ArtifactType == artifactType {
			out = append(out, desc)
		}
	}
	return out, nil
}

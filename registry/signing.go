package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/internal/cache"
	"github.com/wharf-registry/wharf/oci"
)

// Signer turns a blob and an expiry into a URL that downloads the blob
// with no other credential.
type Signer interface {
	// SignBlob signs a URL valid until expires. The returned Expires is the
	// URL's true expiry; it may be earlier than asked (a signer whose
	// credentials expire sooner caps it), never later. A URL without a
	// scheme and host is relative to the registry's public URL.
	SignBlob(ctx context.Context, blob BlobInfo, expires time.Time) (SignedURL, error)
}

// RotatingSigner is a Signer whose signatures depend on credentials that
// change over time (temporary cloud credentials, say). SigningGeneration
// identifies the credentials SignBlob would sign with now; the registry's
// signature cache includes it in its key, so a signature made with
// credentials that have since rotated is never served. Such a signer also
// caps every URL's Expires at its credentials' expiry, which bounds how
// long a cached signature is served at all.
type RotatingSigner interface {
	Signer
	SigningGeneration(ctx context.Context) (string, error)
}

// signingGeneration returns s's credential generation ("" for a signer
// whose credentials do not rotate).
func signingGeneration(ctx context.Context, s Signer) (string, error) {
	rs, ok := s.(RotatingSigner)
	if !ok {
		return "", nil
	}
	g, err := rs.SigningGeneration(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: signing credentials: %v", ErrSigning, err)
	}
	return g, nil
}

// SignedURL is a download URL and the moment it stops working.
type SignedURL struct {
	URL     string
	Expires time.Time
}

// ErrSigning wraps a signer failure: the batch endpoint answers 500.
var ErrSigning = errors.New("signing failed")

// expiryBucket is how finely expiry times are rounded so that signatures
// can be shared: a tenth of the requested lifetime, between 1 s and 5 min.
func expiryBucket(d time.Duration) time.Duration {
	return min(max(d/10, time.Second), 5*time.Minute)
}

// expiryFor returns the expiry to sign for a URL that must live at least
// d from now: now+d rounded up to the bucket, so every caller within one
// bucket gets the same time and the same cached signatures. Rounding never
// carries a URL past batch.MaxExpiry from now: at the cap the expiry is exact
// (to the second), and signatures are shared per second instead.
func expiryFor(now time.Time, d time.Duration) time.Time {
	d = min(d, batch.MaxExpiry)
	b := expiryBucket(d)
	t := now.Add(d)
	r := t.Truncate(b)
	if r.Before(t) {
		r = r.Add(b)
	}
	if limit := now.Add(batch.MaxExpiry).Truncate(time.Second); r.After(limit) {
		r = limit
	}
	return r
}

// signatureCache shares signatures per (digest, expiry): a thousand clients
// pulling one image in one bucket cost one signature per blob.
type signatureCache struct {
	m      *cache.Cache[sigKey, SignedURL]
	hits   atomic.Uint64
	misses atomic.Uint64
}

type sigKey struct {
	d   digest.Digest
	key string // storage key: a blob collected and uploaded again may live elsewhere
	exp int64
	gen string // RotatingSigner credential generation
}

func (c *signatureCache) sign(ctx context.Context, s Signer, b BlobInfo, exp time.Time, now time.Time) (SignedURL, error) {
	gen, err := signingGeneration(ctx, s)
	if err != nil {
		return SignedURL{}, err
	}
	k := sigKey{b.Digest, b.Key, exp.Unix(), gen}
	if u, ok := c.m.Get(k); ok && u.Expires.After(now) {
		c.hits.Add(1)
		return u, nil
	}
	c.misses.Add(1)
	u, err := s.SignBlob(ctx, b, exp)
	if err != nil {
		return SignedURL{}, fmt.Errorf("%w: blob %s: %v", ErrSigning, b.Digest, err)
	}
	c.m.Put(k, u)
	return u, nil
}

// SignatureCacheStats reports signature cache hits and misses.
func (r *Registry) SignatureCacheStats() (hits, misses uint64) {
	return r.c.sigs.hits.Load(), r.c.sigs.misses.Load()
}

// SignBlobURL returns a signed URL for a blob the repository may serve
// (the 307 redirect of a blob GET). It reports false when no signer is
// configured or the blob has no stored object (a manifest read as a blob).
func (r *Registry) SignBlobURL(ctx context.Context, info BlobInfo, lifetime time.Duration) (SignedURL, bool, error) {
	if r.signer == nil || info.Key == "" {
		return SignedURL{}, false, nil
	}
	now := r.now()
	u, err := r.c.sigs.sign(ctx, r.signer, info, expiryFor(now, lifetime), now)
	if err != nil {
		return SignedURL{}, false, err
	}
	return u, true, nil
}

// ---- the batch endpoint ----

// IndexError is the 415 answer when a reference names an index: it lists
// the children so the caller can choose a platform.
type IndexError struct {
	// Digest is set when the index is the child that platform chose of
	// the index the reference names (a nested index).
	Digest    digest.Digest    `json:"digest,omitempty"`
	MediaType string           `json:"mediaType"`
	Manifests []oci.Descriptor `json:"manifests"`
}

func isIndex(rec ManifestRecord) bool {
	return rec.MediaType == oci.MediaTypeOCIIndex || rec.MediaType == oci.MediaTypeDockerManifestList
}

// indexError lists the children of a stored index; nested is the digest
// of a nested index ("" for the one the reference names).
func indexError(index ManifestRecord, nested digest.Digest) error {
	m, err := oci.ParseManifest(index.MediaType, index.Payload, index.Digest.Algorithm())
	if err != nil {
		return internal("parse stored index", err)
	}
	return &IndexError{Digest: nested, MediaType: index.MediaType, Manifests: m.Manifests}
}

func (e *IndexError) Error() string { return "the reference is an index; choose a platform" }

// ErrNotFoundBatch is the batch endpoint's single 404: the same for an
// unknown repository and an unknown reference, so the answer leaks nothing.
var ErrNotFoundBatch = oci.Errorf(oci.CodeManifestUnknown, "manifest unknown")

// resolvedImage is a manifest's blobs, looked up once and cached.
type resolvedImage struct {
	digest digest.Digest
	blobs  []resolvedBlob
	total  int64
}

type resolvedBlob struct {
	info      BlobInfo
	mediaType string
	kind      string
}

// BlobURLs resolves repo:ref to one image manifest and signs a URL for
// each of its blobs, config first, then layers in manifest order. platform,
// if set, picks a child of an index ("os/arch[/variant]"). base is the
// registry's public URL, which relative signed URLs are resolved against.
func (r *Registry) BlobURLs(ctx context.Context, repo string, ref oci.Reference, lifetime time.Duration, platform, base string) (*batch.Response, error) {
	if r.signer == nil {
		return nil, fmt.Errorf("%w: no signer configured", ErrSigning)
	}
	// Read before any lookup: a write after this point invalidates what
	// we are about to cache.
	gen := r.c.gens.get(repo)
	rec, err := r.Manifest(ctx, repo, ref)
	if err != nil {
		if errors.Is(err, oci.ErrManifestUnknown) {
			return nil, ErrNotFoundBatch
		}
		return nil, err
	}
	if isIndex(rec) {
		rec, err = r.pickPlatform(ctx, repo, rec, platform)
		if err != nil {
			return nil, err
		}
		if isIndex(rec) {
			// Not resolved further: one level of platform choice is what
			// the parameter means, and the caller picks a child by digest.
			return nil, indexError(rec, rec.Digest)
		}
	}
	img, err := r.resolveImage(ctx, repo, rec)
	if err != nil {
		return nil, err
	}
	now := r.now()
	exp := expiryFor(now, lifetime)
	sgen, err := signingGeneration(ctx, r.signer)
	if err != nil {
		return nil, err
	}
	key := batchKey{repo: repo, digest: img.digest, exp: exp.Unix(), base: base, sgen: sgen}
	if e, ok := r.c.batches.Get(key); ok && e.gen == gen {
		return e.v, nil
	}
	out := &batch.Response{ManifestDigest: img.digest, ExpiresAt: exp.UTC(), TotalSize: img.total, Blobs: make([]batch.Blob, len(img.blobs)),
		Manifest: &batch.Manifest{MediaType: rec.MediaType, Digest: rec.Digest, Size: int64(len(rec.Payload)), Data: rec.Payload}}
	for i, b := range img.blobs {
		u, err := r.c.sigs.sign(ctx, r.signer, b.info, exp, now)
		if err != nil {
			return nil, err
		}
		if u.Expires.Before(out.ExpiresAt) {
			out.ExpiresAt = u.Expires.UTC()
		}
		if strings.HasPrefix(u.URL, "/") {
			u.URL = base + u.URL
		}
		out.Blobs[i] = batch.Blob{Digest: b.info.Digest, Size: b.info.Size, MediaType: b.mediaType, Kind: b.kind, DownloadURL: u.URL}
	}
	key.repo, key.base = strings.Clone(repo), strings.Clone(base) // not the request they came from
	r.c.batches.Put(key, cached[*batch.Response]{gen, out})
	return out, nil
}

type batchKey struct {
	base   string
	repo   string
	digest digest.Digest
	exp    int64
	sgen   string // signer credential generation
}

func (r *Registry) pickPlatform(ctx context.Context, repo string, index ManifestRecord, platform string) (ManifestRecord, error) {
	if platform == "" {
		return ManifestRecord{}, indexError(index, "")
	}
	m, err := oci.ParseManifest(index.MediaType, index.Payload, index.Digest.Algorithm())
	if err != nil {
		return ManifestRecord{}, internal("parse stored index", err)
	}
	want, err := oci.ParsePlatform(platform)
	if err != nil {
		return ManifestRecord{}, err
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && oci.PlatformMatches(*c.Platform, want) {
			return r.Manifest(ctx, repo, oci.Reference{Digest: c.Digest})
		}
	}
	return ManifestRecord{}, ErrNotFoundBatch
}

func (r *Registry) resolveImage(ctx context.Context, repo string, rec ManifestRecord) (*resolvedImage, error) {
	key := refKey{repo, rec.Digest.String()}
	gen := r.c.gens.get(repo)
	if e, ok := r.c.images.Get(key); ok && e.gen == gen {
		return e.v, nil
	}
	m, err := oci.ParseManifest(rec.MediaType, rec.Payload, rec.Digest.Algorithm())
	if err != nil {
		return nil, internal("parse stored manifest", err)
	}
	infos, err := r.meta.ManifestBlobs(ctx, repo, rec.Digest)
	if err != nil {
		return nil, internal("manifest blobs", err)
	}
	if rt, ok := r.cacheRoute(repo); ok && len(infos) < len(uniqueDigests(m.Blobs())) {
		// A pull-through cache's image whose blobs are not all here yet:
		// fetch them first, so every URL of the answer works.
		if infos, err = r.fetchMissing(ctx, repo, rt, rec.Digest, m.Blobs(), infos); err != nil {
			return nil, err
		}
	}
	byDigest := make(map[digest.Digest]BlobInfo, len(infos))
	for _, i := range infos {
		byDigest[i.Digest] = i
	}
	img := &resolvedImage{digest: rec.Digest}
	for i, d := range m.Blobs() {
		info, ok := byDigest[d.Digest]
		if !ok {
			return nil, oci.Errorf(oci.CodeBlobUnknown, "blob %s of manifest %s is no longer in the repository", d.Digest, rec.Digest).WithStatus(404)
		}
		kind := "layer"
		if i == 0 {
			kind = "config"
		}
		img.blobs = append(img.blobs, resolvedBlob{info: info, mediaType: d.MediaType, kind: kind})
		img.total += info.Size
	}
	key.repo = strings.Clone(repo) // the digest is the stored manifest's
	r.c.images.Put(key, cached[*resolvedImage]{gen, img})
	return img, nil
}

// OpenStoredBlob opens a blob by digest alone, whatever repository holds
// it: the signed-download route, whose signature was issued to a caller
// authorized for one of them.
func (r *Registry) OpenStoredBlob(ctx context.Context, d digest.Digest) (BlobInfo, ReadSeekCloser, error) {
	info, err := r.meta.Blob(ctx, d)
	if errors.Is(err, ErrNotFound) {
		return info, nil, oci.ErrBlobUnknown.WithDetail(map[string]string{"digest": d.String()})
	}
	if err != nil {
		return info, nil, internal("stat blob", err)
	}
	f, err := r.blobs.Open(ctx, info.Key)
	if errors.Is(err, ErrNotFound) {
		return info, nil, oci.ErrBlobUnknown.WithDetail(map[string]string{"digest": d.String()})
	}
	if err != nil {
		return info, nil, internal("open blob", err)
	}
	return info, f, nil
}

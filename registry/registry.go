// Package registry is the core of Wharf: the rules of the OCI Distribution
// Specification over two seams, a MetadataStore and a BlobStore. It knows
// nothing of HTTP; the server package translates requests into calls here
// and *oci.Error values back into responses.
package registry

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// Options are the registry's limits.
type Options struct {
	// MaxManifestBytes bounds a manifest body (default 4 MiB).
	MaxManifestBytes int64
	// MaxManifestReferences bounds the blobs and child manifests one
	// manifest may reference (default DefaultMaxManifestReferences): each
	// costs a lookup when the manifest is pushed.
	MaxManifestReferences int
	// CacheMaxBytes bounds the memory of all in-memory caches together
	// (manifests, tag lists, resolved images, batch answers, blob lookups,
	// signatures, generation counters; default DefaultCacheMaxBytes).
	CacheMaxBytes int64
	// Logger receives warnings about cleanup that failed after the fact.
	Logger *slog.Logger
	// Signer makes signed blob URLs (redirects, the batch endpoint); nil
	// disables both.
	Signer Signer
	// Now is the clock (tests inject one); nil is time.Now.
	Now func() time.Time
	// Proxy routes the repositories a pull-through cache serves to their
	// upstream (nil: none). Those repositories are read-only.
	Proxy func(repo string) (ProxyRoute, bool)
	// ProxyEvent, when set, is told each outcome of the pull-through
	// cache (the Proxy* event names): metrics count them.
	ProxyEvent func(event string)
	// SpoolDir holds the pull-through cache's blobs while they are
	// fetched (streamed to the clients waiting for them); "" is the
	// system's temporary directory.
	SpoolDir string
}

// DefaultMaxManifestBytes is the manifest size limit when none is set.
const DefaultMaxManifestBytes = 4 << 20

// DefaultMaxManifestReferences is the reference limit when none is set:
// far above real images (a few hundred layers at most), far below the
// ~37,000 descriptors that fit in 4 MiB.
const DefaultMaxManifestReferences = 10000

// Registry implements the distribution spec's operations.
type Registry struct {
	meta   MetadataStore
	blobs  BlobStore
	signer Signer
	opts   Options
	c      *caches
	proxy  *proxy
	locks  keyedMutex
	log    *slog.Logger
	now    func() time.Time
	newID  func() string

	// cacheBlobLookups is off when replicas share the metadata store: a
	// blob deleted through one replica must be gone on the next request to
	// any other (the spec's "delete is atomic"), which a notification that
	// arrives a moment later cannot promise.
	cacheBlobLookups bool
}

// blobInfoEntry caches a RepoBlob answer: valid while the repository's
// generation is unchanged (every write that unlinks a blob bumps it, on
// every replica) and for at most blobInfoTTL, which bounds staleness
// after a deletion that bumps nothing (garbage collection of a blob no
// manifest references).
type blobInfoEntry struct {
	gen  uint64
	at   time.Time
	info BlobInfo
}

const blobInfoTTL = 10 * time.Second

// New returns a Registry over the given stores.
func New(meta MetadataStore, blobs BlobStore, opts Options) *Registry {
	if opts.MaxManifestBytes <= 0 {
		opts.MaxManifestBytes = DefaultMaxManifestBytes
	}
	if opts.MaxManifestReferences <= 0 {
		opts.MaxManifestReferences = DefaultMaxManifestReferences
	}
	if opts.CacheMaxBytes <= 0 {
		opts.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	_, shared := meta.(ChangeFeed)
	return &Registry{
		meta: meta, blobs: blobs, opts: opts, log: log,
		c:                newCaches(opts.CacheMaxBytes, opts.Now),
		proxy:            newProxy(opts.Proxy),
		now:              opts.Now,
		signer:           opts.Signer,
		newID:            func() string { return uuid.NewString() },
		cacheBlobLookups: !shared,
	}
}

// MaxManifestBytes is the configured manifest size limit.
func (r *Registry) MaxManifestBytes() int64 { return r.opts.MaxManifestBytes }

// Ping checks both stores' reachability (metadata here; blob stores are
// checked by opening nothing, they have no cheap ping yet).
func (r *Registry) Ping(ctx context.Context) error { return r.meta.Ping(ctx) }

// internal wraps a store failure: logged by the server, sent as UNKNOWN.
func internal(op string, err error) error { return fmt.Errorf("%s: %w", op, err) }

// ---- Blobs ----

// StatBlob returns a blob the repository may serve. A manifest's digest is
// a blob too (the tutorial fetches a manifest through the blob URL).
func (r *Registry) StatBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	info, err := r.statBlob(ctx, repo, d)
	if rt, ok := r.cacheRoute(repo); ok && errors.Is(err, oci.ErrBlobUnknown) {
		return r.statFetch(ctx, repo, rt, d)
	}
	return info, err
}

func (r *Registry) statBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	// The blob GET hot path (a 307 costs this lookup and a cached
	// signature): served from memory while nothing changed.
	key := refKey{repo, d.String()}
	gen, now := r.c.gens.get(repo), r.now() // before the lookup
	if r.cacheBlobLookups {
		if e, ok := r.c.blobInfos.Get(key); ok && e.gen == gen && now.Sub(e.at) < blobInfoTTL {
			return e.info, nil
		}
	}
	info, err := r.meta.RepoBlob(ctx, repo, d)
	if err == nil {
		if r.cacheBlobLookups {
			key = refKey{strings.Clone(repo), strings.Clone(key.ref)} // not the request line
			r.c.blobInfos.Put(key, &blobInfoEntry{gen: gen, at: now, info: info})
		}
		return info, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return BlobInfo{}, internal("stat blob", err)
	}
	m, err := r.meta.Manifest(ctx, repo, oci.Reference{Digest: d})
	if errors.Is(err, ErrNotFound) {
		return BlobInfo{}, oci.ErrBlobUnknown.WithDetail(map[string]string{"digest": d.String()})
	}
	if err != nil {
		return BlobInfo{}, internal("stat blob", err)
	}
	return BlobInfo{Digest: d, Size: int64(len(m.Payload))}, nil
}

// OpenBlob returns a blob's info and a reader positioned at its start.
func (r *Registry) OpenBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, ReadSeekCloser, error) {
	return r.GetBlob(ctx, repo, d, false)
}

// GetBlob answers a blob GET. With redirect set, a stored blob comes back
// without a reader (the caller signs a URL for it, see SignBlobURL); a
// manifest read as a blob, and a blob a pull-through cache is fetching
// right now, come back with one.
func (r *Registry) GetBlob(ctx context.Context, repo string, d digest.Digest, redirect bool) (BlobInfo, ReadSeekCloser, error) {
	info, err := r.statBlob(ctx, repo, d)
	if rt, ok := r.cacheRoute(repo); ok && errors.Is(err, oci.ErrBlobUnknown) {
		return r.streamBlob(ctx, repo, rt, d)
	}
	if err != nil {
		return info, nil, err
	}
	if redirect && info.Key != "" {
		return info, nil, nil
	}
	return r.openStored(ctx, repo, info)
}

// openStored opens a blob statBlob found.
func (r *Registry) openStored(ctx context.Context, repo string, info BlobInfo) (BlobInfo, ReadSeekCloser, error) {
	d := info.Digest
	if info.Key == "" { // a manifest, served from the metadata store
		m, err := r.meta.Manifest(ctx, repo, oci.Reference{Digest: d})
		if err != nil {
			return info, nil, internal("open manifest blob", err)
		}
		return info, nopCloser{bytes.NewReader(m.Payload)}, nil
	}
	f, err := r.blobs.Open(ctx, info.Key)
	if err != nil {
		return info, nil, internal("open blob "+d.String(), err)
	}
	return info, f, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// DeleteBlob stops the repository serving d. The bytes stay in storage
// until garbage collection finds nothing references them. Deleting a
// manifest's digest through the blob API deletes the manifest.
func (r *Registry) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	if err := r.writable(repo); err != nil {
		return err
	}
	err := r.meta.UnlinkBlob(ctx, repo, d)
	if err == nil {
		r.c.gens.bump(repo) // cached images may list the blob
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return internal("delete blob", err)
	}
	if err := r.DeleteManifest(ctx, repo, oci.Reference{Digest: d}); err != nil {
		if errors.Is(err, oci.ErrManifestUnknown) {
			return oci.ErrBlobUnknown.WithDetail(map[string]string{"digest": d.String()})
		}
		return err
	}
	return nil
}

// MountBlob links d into repo from another repository without moving
// bytes. With from set, d must be in from and readable there; with from
// empty, any repository holding d that canRead admits will do. It reports
// whether the blob was mounted.
func (r *Registry) MountBlob(ctx context.Context, repo string, d digest.Digest, from string, canRead func(repo string) bool) (bool, error) {
	if err := r.writable(repo); err != nil {
		return false, err
	}
	var source string
	if from != "" {
		if oci.ValidateName(from) != nil || !canRead(from) {
			return false, nil
		}
		if _, err := r.meta.RepoBlob(ctx, from, d); err != nil {
			if errors.Is(err, ErrNotFound) {
				return false, nil
			}
			return false, internal("mount", err)
		}
		source = from
	} else {
		repos, err := r.meta.ReposWithBlob(ctx, d, 50)
		if err != nil {
			return false, internal("mount", err)
		}
		for _, c := range repos {
			if c == repo || canRead(c) {
				source = c
				break
			}
		}
		if source == "" {
			return false, nil
		}
	}
	if err := r.touchBlob(ctx, d); err != nil {
		return false, err
	}
	if err := r.meta.LinkBlob(ctx, repo, d); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, internal("mount", err)
	}
	return true, nil
}

// ---- Uploads ----

// StartUpload opens an upload session. alg is the digest algorithm to
// stream-hash with (sha256 when empty).
func (r *Registry) StartUpload(ctx context.Context, repo string, alg digest.Algorithm) (*Upload, error) {
	if err := r.writable(repo); err != nil {
		return nil, err
	}
	return r.startUpload(ctx, repo, alg)
}

func (r *Registry) startUpload(ctx context.Context, repo string, alg digest.Algorithm) (*Upload, error) {
	if alg == "" {
		alg = digest.SHA256
	}
	h := alg.Hash()
	state, err := marshalHash(h)
	if err != nil {
		return nil, internal("start upload", err)
	}
	t := r.now()
	u := &Upload{ID: r.newID(), Repo: repo, HashAlg: alg, HashState: state, CreatedAt: t, UpdatedAt: t}
	if err := r.blobs.Uploads().Begin(ctx, u); err != nil {
		return nil, internal("start upload", err)
	}
	if err := r.meta.CreateUpload(ctx, u); err != nil {
		_ = r.blobs.Uploads().Abort(ctx, u)
		return nil, internal("start upload", err)
	}
	return u, nil
}

// Upload returns an upload session's state.
func (r *Registry) Upload(ctx context.Context, repo, id string) (*Upload, error) {
	u, err := r.meta.Upload(ctx, repo, id)
	if errors.Is(err, ErrNotFound) {
		return nil, oci.ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
	}
	if err != nil {
		return nil, internal("upload status", err)
	}
	return u, nil
}

// Chunk is a piece of an upload. Start is where the client says it goes
// (-1 when it did not say); Length is its declared size (-1 if unknown).
type Chunk struct {
	Body   io.Reader
	Start  int64
	Length int64
}

// AppendUpload writes a chunk at the end of the session. A chunk that does
// not start at the current offset is refused with 416; a chunk cut short
// is not recorded, so the session stays where it was.
func (r *Registry) AppendUpload(ctx context.Context, repo, id string, c Chunk) (*Upload, error) {
	unlock, err := r.lockUpload(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	u, err := r.Upload(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	if err := r.append(ctx, u, c, true); err != nil {
		return u, err
	}
	return u, nil
}

// append writes a chunk and, if persist, records the new offset and hash
// state. FinishUpload does not persist: the session is committed or
// aborted right after, and if that fails the stored state is still an
// earlier, consistent one (the next Append drops the unrecorded bytes).
func (r *Registry) append(ctx context.Context, u *Upload, c Chunk, persist bool) error {
	if c.Start >= 0 && c.Start != u.Offset {
		return oci.Errorf(oci.CodeRangeInvalid, "chunk starts at %d; the upload is at %d", c.Start, u.Offset).
			WithDetail(map[string]int64{"offset": u.Offset})
	}
	h, err := unmarshalHash(u.HashAlg, u.HashState)
	if err != nil {
		return internal("restore upload hash", err)
	}
	prev := u.Offset
	n, err := r.blobs.Uploads().Append(ctx, u, io.TeeReader(c.Body, h))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return oci.ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": u.ID})
		}
		return fmt.Errorf("upload %s: writing chunk: %w", u.ID, err)
	}
	if c.Length >= 0 && n != c.Length {
		return oci.Errorf(oci.CodeSizeInvalid, "chunk has %d bytes; %d were declared", n, c.Length)
	}
	if n == 0 {
		return nil
	}
	state, err := marshalHash(h)
	if err != nil {
		return internal("save upload hash", err)
	}
	u.Offset, u.HashState, u.UpdatedAt = prev+n, state, r.now()
	if !persist {
		return nil
	}
	if err := r.meta.UpdateUpload(ctx, u, prev); err != nil {
		u.Offset = prev
		if errors.Is(err, ErrConflict) {
			return oci.Errorf(oci.CodeRangeInvalid, "upload %s was advanced concurrently", u.ID)
		}
		return internal("save upload", err)
	}
	return nil
}

// FinishUpload appends an optional last chunk, verifies the digest and
// stores the blob. A digest mismatch cancels the session: nothing is kept.
func (r *Registry) FinishUpload(ctx context.Context, repo, id string, d digest.Digest, c Chunk) (BlobInfo, error) {
	unlock, err := r.lockUpload(ctx, repo, id)
	if err != nil {
		return BlobInfo{}, err
	}
	defer unlock()
	u, err := r.Upload(ctx, repo, id)
	if err != nil {
		return BlobInfo{}, err
	}
	if c.Body != nil {
		if err := r.append(ctx, u, c, false); err != nil {
			return BlobInfo{}, err
		}
	}
	got, err := r.uploadDigest(ctx, u, d.Algorithm())
	if err != nil {
		return BlobInfo{}, err
	}
	if got != d {
		r.abort(ctx, u)
		return BlobInfo{}, oci.Errorf(oci.CodeDigestInvalid, "upload has digest %s, not %s", got, d)
	}
	// Before the bytes land where a collected copy of d may be being
	// deleted: wait for that deletion, and keep GC off d from now on.
	if err := r.touchBlob(ctx, d); err != nil {
		return BlobInfo{}, err
	}
	key, err := r.blobs.Uploads().Commit(ctx, u, d)
	if err != nil {
		return BlobInfo{}, internal("commit upload", err)
	}
	info, err := r.meta.CommitUpload(ctx, u.ID, BlobInfo{Digest: d, Size: u.Offset, Key: key})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return BlobInfo{}, oci.ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
		}
		return BlobInfo{}, internal("commit upload", err)
	}
	if info.Key != key {
		// Another upload stored the same bytes first; ours is redundant.
		if err := r.blobs.Delete(ctx, key); err != nil {
			r.log.WarnContext(ctx, "delete redundant blob object", "key", key, "err", err)
		}
	}
	return info, nil
}

func (r *Registry) uploadDigest(ctx context.Context, u *Upload, alg digest.Algorithm) (digest.Digest, error) {
	if alg == u.HashAlg {
		h, err := unmarshalHash(u.HashAlg, u.HashState)
		if err != nil {
			return "", internal("restore upload hash", err)
		}
		return digest.NewDigest(alg, h), nil
	}
	// The session was hashed with another algorithm: read it back once.
	rd, err := r.blobs.Uploads().Reader(ctx, u)
	if err != nil {
		return "", internal("read upload", err)
	}
	defer rd.Close()
	dg, err := alg.FromReader(rd)
	if err != nil {
		return "", internal("read upload", err)
	}
	return dg, nil
}

// PutBlob is a monolithic upload: the whole blob in one request.
func (r *Registry) PutBlob(ctx context.Context, repo string, d digest.Digest, c Chunk) (BlobInfo, error) {
	if err := r.writable(repo); err != nil {
		return BlobInfo{}, err
	}
	return r.putBlob(ctx, repo, d, c)
}

func (r *Registry) putBlob(ctx context.Context, repo string, d digest.Digest, c Chunk) (BlobInfo, error) {
	u, err := r.startUpload(ctx, repo, d.Algorithm())
	if err != nil {
		return BlobInfo{}, err
	}
	info, err := r.FinishUpload(ctx, repo, u.ID, d, c)
	if err != nil {
		r.abort(context.WithoutCancel(ctx), u)
	}
	return info, err
}

// CancelUpload ends a session and releases its storage.
func (r *Registry) CancelUpload(ctx context.Context, repo, id string) error {
	unlock, err := r.lockUpload(ctx, repo, id)
	if errors.Is(err, oci.ErrRangeInvalid) {
		return oci.Errorf(oci.CodeBlobUploadInvalid, "upload %s is being written by another request", id)
	}
	if err != nil {
		return err
	}
	defer unlock()
	u, err := r.Upload(ctx, repo, id)
	if err != nil {
		return err
	}
	r.abort(ctx, u)
	return nil
}

func (r *Registry) abort(ctx context.Context, u *Upload) {
	// Whoever deletes the session's row owns its storage. A session that
	// is already gone was committed or aborted by another request (on any
	// replica): its storage is that request's, and may now be a blob.
	if err := r.meta.DeleteUpload(ctx, u.ID); err != nil {
		if !errors.Is(err, ErrNotFound) {
			r.log.WarnContext(ctx, "delete upload session; its storage is kept until the next expiry pass", "upload", u.ID, "err", err)
		}
		return
	}
	if err := r.blobs.Uploads().Abort(ctx, u); err != nil {
		r.log.WarnContext(ctx, "abort upload storage", "upload", u.ID, "err", err)
	}
}

// ExpireUploads aborts sessions idle for longer than maxAge.
func (r *Registry) ExpireUploads(ctx context.Context, maxAge time.Duration) (int, error) {
	old, err := r.meta.ExpiredUploads(ctx, r.now().Add(-maxAge), 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range old {
		unlock, err := r.lockUpload(ctx, u.Repo, u.ID)
		switch {
		case err == nil:
			r.abort(ctx, u)
			unlock()
		case errors.Is(err, oci.ErrBlobUploadUnknown):
			r.abort(ctx, u) // its storage is gone already: forget the row
		default:
			continue // written right now (not idle after all)
		}
		n++
	}
	return n, nil
}

// lockUpload holds a session for one request: in this process (waiting),
// then in the blob store against other processes (not waiting: a request
// writing the session on another replica gets 416, as a lost race on the
// offset does). Every read of a session's state that leads to a write is
// made under it, so no two requests ever write one session's bytes.
func (r *Registry) lockUpload(ctx context.Context, repo, id string) (func(), error) {
	unlock := r.locks.lock(id)
	unlockStore, err := r.blobs.Uploads().Lock(ctx, &Upload{ID: id, Repo: repo})
	if err != nil {
		unlock()
		switch {
		case errors.Is(err, ErrNotFound):
			return nil, oci.ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
		case errors.Is(err, ErrConflict):
			return nil, oci.Errorf(oci.CodeRangeInvalid, "upload %s is being written by another request", id)
		}
		return nil, internal("lock upload", err)
	}
	return func() { unlockStore(); unlock() }, nil
}

func marshalHash(h hash.Hash) ([]byte, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, fmt.Errorf("hash %T cannot save its state", h)
	}
	return m.MarshalBinary()
}

func unmarshalHash(alg digest.Algorithm, state []byte) (hash.Hash, error) {
	if !alg.Available() {
		return nil, fmt.Errorf("digest algorithm %q unavailable", alg)
	}
	h := alg.Hash()
	u, ok := h.(encoding.BinaryUnmarshaler)
	if !ok {
		return nil, fmt.Errorf("hash %T cannot restore its state", h)
	}
	if err := u.UnmarshalBinary(state); err != nil {
		return nil, err
	}
	return h, nil
}

// keyedMutex serializes work on one key (an upload session) in this
// process. Across replicas the metadata store's conditional update is what
// keeps two writers from both advancing a session.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// Package instrument holds the decorators that let metrics and tracing
// watch the seams (the stores, the URL signer, the authorizer): one
// wrapper per interface, forwarding the optional interfaces
// (registry.BlobToucher, registry.ChangeFeed, Pinger,
// registry.RotatingSigner) exactly when the wrapped value has them, and
// reporting each call to an Observer. Metrics and tracing are two
// Observers of the same wrappers.
package instrument

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Op is one operation of a seam.
type Op struct {
	// Seam is "metadata", "blob", "signer" or "auth"; Name is the
	// operation ("put_manifest").
	Seam, Name string
	// Index is the operation's position in Ops(), for observers that keep
	// per-operation state in a slice.
	Index int
}

// Observer watches operations. Start is called before each; the
// function it returns is called with the outcome. The context it returns
// is the one the operation runs with (a tracer puts its span there).
type Observer interface {
	Start(ctx context.Context, op Op) (context.Context, func(err error))
}

var ops []Op

func newOp(seam, name string) Op {
	o := Op{Seam: seam, Name: name, Index: len(ops)}
	ops = append(ops, o)
	return o
}

// Ops lists every operation the wrappers report.
func Ops() []Op { return append([]Op(nil), ops...) }

var (
	opMetadataTouchBlob      = newOp(SeamMetadata, "touch_blob")
	opMetadataRepoBlob       = newOp(SeamMetadata, "repo_blob")
	opMetadataBlob           = newOp(SeamMetadata, "blob")
	opMetadataManifestBlobs  = newOp(SeamMetadata, "manifest_blobs")
	opMetadataReposWithBlob  = newOp(SeamMetadata, "repos_with_blob")
	opMetadataCommitUpload   = newOp(SeamMetadata, "commit_upload")
	opMetadataLinkBlob       = newOp(SeamMetadata, "link_blob")
	opMetadataUnlinkBlob     = newOp(SeamMetadata, "unlink_blob")
	opMetadataPutManifest    = newOp(SeamMetadata, "put_manifest")
	opMetadataManifest       = newOp(SeamMetadata, "manifest")
	opMetadataDeleteManifest = newOp(SeamMetadata, "delete_manifest")
	opMetadataDeleteTag      = newOp(SeamMetadata, "delete_tag")
	opMetadataTags           = newOp(SeamMetadata, "tags")
	opMetadataRepositories   = newOp(SeamMetadata, "repositories")
	opMetadataReferrers      = newOp(SeamMetadata, "referrers")
	opMetadataCreateUpload   = newOp(SeamMetadata, "create_upload")
	opMetadataUpload         = newOp(SeamMetadata, "upload")
	opMetadataUpdateUpload   = newOp(SeamMetadata, "update_upload")
	opMetadataDeleteUpload   = newOp(SeamMetadata, "delete_upload")
	opMetadataExpiredUploads = newOp(SeamMetadata, "expired_uploads")
	opMetadataPing           = newOp(SeamMetadata, "ping")
	opBlobPing               = newOp(SeamBlob, "ping")
	opBlobOpen               = newOp(SeamBlob, "open")
	opBlobDelete             = newOp(SeamBlob, "delete")
	opBlobUploadBegin        = newOp(SeamBlob, "upload_begin")
	opBlobUploadLock         = newOp(SeamBlob, "upload_lock")
	opBlobUploadAppend       = newOp(SeamBlob, "upload_append")
	opBlobUploadReader       = newOp(SeamBlob, "upload_reader")
	opBlobUploadCommit       = newOp(SeamBlob, "upload_commit")
	opBlobUploadAbort        = newOp(SeamBlob, "upload_abort")
)

// Expected reports whether err is an answer (not found, a lost race, an
// OCI error, a client that went away) rather than a failure of the store.
func Expected(err error) bool {
	var missing *registry.MissingReferencesError
	var oe *oci.Error
	return errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrConflict) ||
		errors.Is(err, context.Canceled) || errors.As(err, &missing) || errors.As(err, &oe) ||
		// a client's body that broke off or stalled mid-upload
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded)
}

// observe runs f, one call of op, under o.
func observe[T any](ctx context.Context, o Observer, op Op, f func(context.Context) (T, error)) (T, error) {
	ctx, done := o.Start(ctx, op)
	v, err := f(ctx)
	done(err)
	return v, err
}

// observeErr is observe for a call that returns only an error.
func observeErr(ctx context.Context, o Observer, op Op, f func(context.Context) error) error {
	ctx, done := o.Start(ctx, op)
	err := f(ctx)
	done(err)
	return err
}

// ---- metadata store ----

// MetadataStore reports every call of a registry.MetadataStore to o. The optional
// interfaces the registry and cmd/wharf look for (registry.BlobToucher,
// registry.ChangeFeed) are implemented by the result exactly when inner
// implements them; Unwrap returns inner.
func MetadataStore(inner registry.MetadataStore, o Observer) registry.MetadataStore {
	s := &metaStore{inner: inner, o: o}
	tc, touches := inner.(registry.BlobToucher)
	f, feeds := inner.(registry.ChangeFeed)
	switch {
	case touches && feeds:
		return &metaToucherFeed{metaStore: s, t: tc, f: f}
	case touches:
		return &metaToucher{metaStore: s, t: tc}
	case feeds:
		return &metaFeed{metaStore: s, f: f}
	}
	return s
}

// Pinger is implemented by stores with a cheap reachability check.
type Pinger interface {
	Ping(ctx context.Context) error
}

// BlobStore reports every call of a registry.BlobStore and its upload half
// to o. Readers it opens are handed out unwrapped (sendfile stays possible). The
// result implements Pinger exactly when inner does; Unwrap returns inner.
func BlobStore(inner registry.BlobStore, o Observer) registry.BlobStore {
	s := &blobStore{inner: inner, up: inner.Uploads(), o: o}
	if p, ok := inner.(Pinger); ok {
		return &blobPinger{blobStore: s, p: p}
	}
	return s
}

type metaStore struct {
	inner registry.MetadataStore
	o     Observer
}

type metaToucher struct {
	*metaStore
	t registry.BlobToucher
}

type metaFeed struct {
	*metaStore
	f registry.ChangeFeed
}

type metaToucherFeed struct {
	*metaStore
	t registry.BlobToucher
	f registry.ChangeFeed
}

func (s *metaToucher) TouchBlob(ctx context.Context, d digest.Digest) error {
	return touch(ctx, s.metaStore, s.t, d)
}

func (s *metaToucherFeed) TouchBlob(ctx context.Context, d digest.Digest) error {
	return touch(ctx, s.metaStore, s.t, d)
}

func touch(ctx context.Context, s *metaStore, t registry.BlobToucher, d digest.Digest) error {
	return observeErr(ctx, s.o, opMetadataTouchBlob, func(ctx context.Context) error { return t.TouchBlob(ctx, d) })
}

func (s *metaFeed) WatchRepos(ctx context.Context, changed func(string)) error {
	return s.f.WatchRepos(ctx, changed)
}

func (s *metaToucherFeed) WatchRepos(ctx context.Context, changed func(string)) error {
	return s.f.WatchRepos(ctx, changed)
}

// Unwrap returns the instrumented store.
func (s *metaStore) Unwrap() registry.MetadataStore { return s.inner }

func (s *metaStore) RepoBlob(ctx context.Context, repo string, d digest.Digest) (registry.BlobInfo, error) {
	return observe(ctx, s.o, opMetadataRepoBlob, func(ctx context.Context) (registry.BlobInfo, error) { return s.inner.RepoBlob(ctx, repo, d) })
}

func (s *metaStore) Blob(ctx context.Context, d digest.Digest) (registry.BlobInfo, error) {
	return observe(ctx, s.o, opMetadataBlob, func(ctx context.Context) (registry.BlobInfo, error) { return s.inner.Blob(ctx, d) })
}

func (s *metaStore) ManifestBlobs(ctx context.Context, repo string, manifest digest.Digest) ([]registry.BlobInfo, error) {
	return observe(ctx, s.o, opMetadataManifestBlobs, func(ctx context.Context) ([]registry.BlobInfo, error) {
		return s.inner.ManifestBlobs(ctx, repo, manifest)
	})
}

func (s *metaStore) ReposWithBlob(ctx context.Context, d digest.Digest, limit int) ([]string, error) {
	return observe(ctx, s.o, opMetadataReposWithBlob, func(ctx context.Context) ([]string, error) { return s.inner.ReposWithBlob(ctx, d, limit) })
}

func (s *metaStore) CommitUpload(ctx context.Context, uploadID string, info registry.BlobInfo) (registry.BlobInfo, error) {
	return observe(ctx, s.o, opMetadataCommitUpload, func(ctx context.Context) (registry.BlobInfo, error) { return s.inner.CommitUpload(ctx, uploadID, info) })
}

func (s *metaStore) LinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	return observeErr(ctx, s.o, opMetadataLinkBlob, func(ctx context.Context) error { return s.inner.LinkBlob(ctx, repo, d) })
}

func (s *metaStore) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	return observeErr(ctx, s.o, opMetadataUnlinkBlob, func(ctx context.Context) error { return s.inner.UnlinkBlob(ctx, repo, d) })
}

func (s *metaStore) PutManifest(ctx context.Context, repo string, m registry.NewManifest) error {
	return observeErr(ctx, s.o, opMetadataPutManifest, func(ctx context.Context) error { return s.inner.PutManifest(ctx, repo, m) })
}

func (s *metaStore) Manifest(ctx context.Context, repo string, ref oci.Reference) (registry.ManifestRecord, error) {
	return observe(ctx, s.o, opMetadataManifest, func(ctx context.Context) (registry.ManifestRecord, error) { return s.inner.Manifest(ctx, repo, ref) })
}

func (s *metaStore) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	return observeErr(ctx, s.o, opMetadataDeleteManifest, func(ctx context.Context) error { return s.inner.DeleteManifest(ctx, repo, d) })
}

func (s *metaStore) DeleteTag(ctx context.Context, repo, tag string) error {
	return observeErr(ctx, s.o, opMetadataDeleteTag, func(ctx context.Context) error { return s.inner.DeleteTag(ctx, repo, tag) })
}

func (s *metaStore) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	return observe(ctx, s.o, opMetadataTags, func(ctx context.Context) ([]string, error) { return s.inner.Tags(ctx, repo, last, n) })
}

func (s *metaStore) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	return observe(ctx, s.o, opMetadataRepositories, func(ctx context.Context) ([]string, error) { return s.inner.Repositories(ctx, last, n) })
}

func (s *metaStore) Referrers(ctx context.Context, repo string, d digest.Digest) ([]oci.Descriptor, error) {
	return observe(ctx, s.o, opMetadataReferrers, func(ctx context.Context) ([]oci.Descriptor, error) { return s.inner.Referrers(ctx, repo, d) })
}

func (s *metaStore) CreateUpload(ctx context.Context, u *registry.Upload) error {
	return observeErr(ctx, s.o, opMetadataCreateUpload, func(ctx context.Context) error { return s.inner.CreateUpload(ctx, u) })
}

func (s *metaStore) Upload(ctx context.Context, repo, id string) (*registry.Upload, error) {
	return observe(ctx, s.o, opMetadataUpload, func(ctx context.Context) (*registry.Upload, error) { return s.inner.Upload(ctx, repo, id) })
}

func (s *metaStore) UpdateUpload(ctx context.Context, u *registry.Upload, prevOffset int64) error {
	return observeErr(ctx, s.o, opMetadataUpdateUpload, func(ctx context.Context) error { return s.inner.UpdateUpload(ctx, u, prevOffset) })
}

func (s *metaStore) DeleteUpload(ctx context.Context, id string) error {
	return observeErr(ctx, s.o, opMetadataDeleteUpload, func(ctx context.Context) error { return s.inner.DeleteUpload(ctx, id) })
}

func (s *metaStore) ExpiredUploads(ctx context.Context, before time.Time, limit int) ([]*registry.Upload, error) {
	return observe(ctx, s.o, opMetadataExpiredUploads, func(ctx context.Context) ([]*registry.Upload, error) {
		return s.inner.ExpiredUploads(ctx, before, limit)
	})
}

func (s *metaStore) Ping(ctx context.Context) error {
	return observeErr(ctx, s.o, opMetadataPing, func(ctx context.Context) error { return s.inner.Ping(ctx) })
}

func (s *metaStore) Close() error { return s.inner.Close() }

type blobStore struct {
	inner registry.BlobStore
	up    registry.UploadStore
	o     Observer
}

type blobPinger struct {
	*blobStore
	p Pinger
}

func (s *blobPinger) Ping(ctx context.Context) error {
	return observeErr(ctx, s.o, opBlobPing, func(ctx context.Context) error { return s.p.Ping(ctx) })
}

// Unwrap returns the instrumented store.
func (s *blobStore) Unwrap() registry.BlobStore { return s.inner }

func (s *blobStore) Open(ctx context.Context, key string) (registry.ReadSeekCloser, error) {
	return observe(ctx, s.o, opBlobOpen, func(ctx context.Context) (registry.ReadSeekCloser, error) { return s.inner.Open(ctx, key) })
}

func (s *blobStore) Delete(ctx context.Context, key string) error {
	return observeErr(ctx, s.o, opBlobDelete, func(ctx context.Context) error { return s.inner.Delete(ctx, key) })
}

func (s *blobStore) Uploads() registry.UploadStore { return (*uploadStore)(s) }

// uploadStore is the upload half of blobStore.
type uploadStore blobStore

func (s *uploadStore) Begin(ctx context.Context, u *registry.Upload) error {
	return observeErr(ctx, s.o, opBlobUploadBegin, func(ctx context.Context) error { return s.up.Begin(ctx, u) })
}

func (s *uploadStore) Lock(ctx context.Context, u *registry.Upload) (func(), error) {
	return observe(ctx, s.o, opBlobUploadLock, func(ctx context.Context) (func(), error) { return s.up.Lock(ctx, u) })
}

func (s *uploadStore) Append(ctx context.Context, u *registry.Upload, r io.Reader) (int64, error) {
	return observe(ctx, s.o, opBlobUploadAppend, func(ctx context.Context) (int64, error) { return s.up.Append(ctx, u, r) })
}

func (s *uploadStore) Reader(ctx context.Context, u *registry.Upload) (io.ReadCloser, error) {
	return observe(ctx, s.o, opBlobUploadReader, func(ctx context.Context) (io.ReadCloser, error) { return s.up.Reader(ctx, u) })
}

func (s *uploadStore) Commit(ctx context.Context, u *registry.Upload, d digest.Digest) (string, error) {
	return observe(ctx, s.o, opBlobUploadCommit, func(ctx context.Context) (string, error) { return s.up.Commit(ctx, u, d) })
}

func (s *uploadStore) Abort(ctx context.Context, u *registry.Upload) error {
	return observeErr(ctx, s.o, opBlobUploadAbort, func(ctx context.Context) error { return s.up.Abort(ctx, u) })
}

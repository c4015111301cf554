// Package instrument holds the decorators that let metrics and tracing
// watch the store seams: one wrapper per store interface, forwarding the
// optional interfaces (registry.BlobToucher, registry.ChangeFeed, Pinger)
// exactly when the wrapped store has them, and reporting each call to an
// Observer. Metrics and tracing are two Observers of the same wrappers.
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

// Op is one store operation.
type Op struct {
	// Store is "metadata" or "blob"; Name is the operation ("put_manifest").
	Store, Name string
	// Index is the operation's position in Ops(), for observers that keep
	// per-operation state in a slice.
	Index int
}

// Observer watches store operations. Start is called before each; the
// function it returns is called with the outcome. The context it returns
// is the one the operation runs with (a tracer puts its span there).
type Observer interface {
	Start(ctx context.Context, op Op) (context.Context, func(err error))
}

var ops []Op

func newOp(store, name string) Op {
	o := Op{Store: store, Name: name, Index: len(ops)}
	ops = append(ops, o)
	return o
}

// Ops lists every operation the wrappers report.
func Ops() []Op { return append([]Op(nil), ops...) }

var (
	opMetadataTouchBlob      = newOp("metadata", "touch_blob")
	opMetadataRepoBlob       = newOp("metadata", "repo_blob")
	opMetadataBlob           = newOp("metadata", "blob")
	opMetadataManifestBlobs  = newOp("metadata", "manifest_blobs")
	opMetadataReposWithBlob  = newOp("metadata", "repos_with_blob")
	opMetadataCommitUpload   = newOp("metadata", "commit_upload")
	opMetadataLinkBlob       = newOp("metadata", "link_blob")
	opMetadataUnlinkBlob     = newOp("metadata", "unlink_blob")
	opMetadataPutManifest    = newOp("metadata", "put_manifest")
	opMetadataManifest       = newOp("metadata", "manifest")
	opMetadataDeleteManifest = newOp("metadata", "delete_manifest")
	opMetadataDeleteTag      = newOp("metadata", "delete_tag")
	opMetadataTags           = newOp("metadata", "tags")
	opMetadataRepositories   = newOp("metadata", "repositories")
	opMetadataReferrers      = newOp("metadata", "referrers")
	opMetadataCreateUpload   = newOp("metadata", "create_upload")
	opMetadataUpload         = newOp("metadata", "upload")
	opMetadataUpdateUpload   = newOp("metadata", "update_upload")
	opMetadataDeleteUpload   = newOp("metadata", "delete_upload")
	opMetadataExpiredUploads = newOp("metadata", "expired_uploads")
	opMetadataPing           = newOp("metadata", "ping")
	opBlobPing               = newOp("blob", "ping")
	opBlobOpen               = newOp("blob", "open")
	opBlobDelete             = newOp("blob", "delete")
	opBlobUploadBegin        = newOp("blob", "upload_begin")
	opBlobUploadLock         = newOp("blob", "upload_lock")
	opBlobUploadAppend       = newOp("blob", "upload_append")
	opBlobUploadReader       = newOp("blob", "upload_reader")
	opBlobUploadCommit       = newOp("blob", "upload_commit")
	opBlobUploadAbort        = newOp("blob", "upload_abort")
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
	ctx, done := s.o.Start(ctx, opMetadataTouchBlob)
	err := t.TouchBlob(ctx, d)
	done(err)
	return err
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
	ctx, done := s.o.Start(ctx, opMetadataRepoBlob)
	b, err := s.inner.RepoBlob(ctx, repo, d)
	done(err)
	return b, err
}

func (s *metaStore) Blob(ctx context.Context, d digest.Digest) (registry.BlobInfo, error) {
	ctx, done := s.o.Start(ctx, opMetadataBlob)
	b, err := s.inner.Blob(ctx, d)
	done(err)
	return b, err
}

func (s *metaStore) ManifestBlobs(ctx context.Context, repo string, manifest digest.Digest) ([]registry.BlobInfo, error) {
	ctx, done := s.o.Start(ctx, opMetadataManifestBlobs)
	b, err := s.inner.ManifestBlobs(ctx, repo, manifest)
	done(err)
	return b, err
}

func (s *metaStore) ReposWithBlob(ctx context.Context, d digest.Digest, limit int) ([]string, error) {
	ctx, done := s.o.Start(ctx, opMetadataReposWithBlob)
	r, err := s.inner.ReposWithBlob(ctx, d, limit)
	done(err)
	return r, err
}

func (s *metaStore) CommitUpload(ctx context.Context, uploadID string, info registry.BlobInfo) (registry.BlobInfo, error) {
	ctx, done := s.o.Start(ctx, opMetadataCommitUpload)
	b, err := s.inner.CommitUpload(ctx, uploadID, info)
	done(err)
	return b, err
}

func (s *metaStore) LinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	ctx, done := s.o.Start(ctx, opMetadataLinkBlob)
	err := s.inner.LinkBlob(ctx, repo, d)
	done(err)
	return err
}

func (s *metaStore) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	ctx, done := s.o.Start(ctx, opMetadataUnlinkBlob)
	err := s.inner.UnlinkBlob(ctx, repo, d)
	done(err)
	return err
}

func (s *metaStore) PutManifest(ctx context.Context, repo string, m registry.NewManifest) error {
	ctx, done := s.o.Start(ctx, opMetadataPutManifest)
	err := s.inner.PutManifest(ctx, repo, m)
	done(err)
	return err
}

func (s *metaStore) Manifest(ctx context.Context, repo string, ref oci.Reference) (registry.ManifestRecord, error) {
	ctx, done := s.o.Start(ctx, opMetadataManifest)
	r, err := s.inner.Manifest(ctx, repo, ref)
	done(err)
	return r, err
}

func (s *metaStore) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	ctx, done := s.o.Start(ctx, opMetadataDeleteManifest)
	err := s.inner.DeleteManifest(ctx, repo, d)
	done(err)
	return err
}

func (s *metaStore) DeleteTag(ctx context.Context, repo, tag string) error {
	ctx, done := s.o.Start(ctx, opMetadataDeleteTag)
	err := s.inner.DeleteTag(ctx, repo, tag)
	done(err)
	return err
}

func (s *metaStore) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	ctx, done := s.o.Start(ctx, opMetadataTags)
	t, err := s.inner.Tags(ctx, repo, last, n)
	done(err)
	return t, err
}

func (s *metaStore) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	ctx, done := s.o.Start(ctx, opMetadataRepositories)
	r, err := s.inner.Repositories(ctx, last, n)
	done(err)
	return r, err
}

func (s *metaStore) Referrers(ctx context.Context, repo string, d digest.Digest) ([]oci.Descriptor, error) {
	ctx, done := s.o.Start(ctx, opMetadataReferrers)
	r, err := s.inner.Referrers(ctx, repo, d)
	done(err)
	return r, err
}

func (s *metaStore) CreateUpload(ctx context.Context, u *registry.Upload) error {
	ctx, done := s.o.Start(ctx, opMetadataCreateUpload)
	err := s.inner.CreateUpload(ctx, u)
	done(err)
	return err
}

func (s *metaStore) Upload(ctx context.Context, repo, id string) (*registry.Upload, error) {
	ctx, done := s.o.Start(ctx, opMetadataUpload)
	u, err := s.inner.Upload(ctx, repo, id)
	done(err)
	return u, err
}

func (s *metaStore) UpdateUpload(ctx context.Context, u *registry.Upload, prevOffset int64) error {
	ctx, done := s.o.Start(ctx, opMetadataUpdateUpload)
	err := s.inner.UpdateUpload(ctx, u, prevOffset)
	done(err)
	return err
}

func (s *metaStore) DeleteUpload(ctx context.Context, id string) error {
	ctx, done := s.o.Start(ctx, opMetadataDeleteUpload)
	err := s.inner.DeleteUpload(ctx, id)
	done(err)
	return err
}

func (s *metaStore) ExpiredUploads(ctx context.Context, before time.Time, limit int) ([]*registry.Upload, error) {
	ctx, done := s.o.Start(ctx, opMetadataExpiredUploads)
	u, err := s.inner.ExpiredUploads(ctx, before, limit)
	done(err)
	return u, err
}

func (s *metaStore) Ping(ctx context.Context) error {
	ctx, done := s.o.Start(ctx, opMetadataPing)
	err := s.inner.Ping(ctx)
	done(err)
	return err
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
	ctx, done := s.o.Start(ctx, opBlobPing)
	err := s.p.Ping(ctx)
	done(err)
	return err
}

// Unwrap returns the instrumented store.
func (s *blobStore) Unwrap() registry.BlobStore { return s.inner }

func (s *blobStore) Open(ctx context.Context, key string) (registry.ReadSeekCloser, error) {
	ctx, done := s.o.Start(ctx, opBlobOpen)
	r, err := s.inner.Open(ctx, key)
	done(err)
	return r, err
}

func (s *blobStore) Delete(ctx context.Context, key string) error {
	ctx, done := s.o.Start(ctx, opBlobDelete)
	err := s.inner.Delete(ctx, key)
	done(err)
	return err
}

func (s *blobStore) Uploads() registry.UploadStore { return (*uploadStore)(s) }

// uploadStore is the upload half of blobStore.
type uploadStore blobStore

func (s *uploadStore) Begin(ctx context.Context, u *registry.Upload) error {
	ctx, done := s.o.Start(ctx, opBlobUploadBegin)
	err := s.up.Begin(ctx, u)
	done(err)
	return err
}

func (s *uploadStore) Lock(ctx context.Context, u *registry.Upload) (func(), error) {
	ctx, done := s.o.Start(ctx, opBlobUploadLock)
	unlock, err := s.up.Lock(ctx, u)
	done(err)
	return unlock, err
}

func (s *uploadStore) Append(ctx context.Context, u *registry.Upload, r io.Reader) (int64, error) {
	ctx, done := s.o.Start(ctx, opBlobUploadAppend)
	n, err := s.up.Append(ctx, u, r)
	done(err)
	return n, err
}

func (s *uploadStore) Reader(ctx context.Context, u *registry.Upload) (io.ReadCloser, error) {
	ctx, done := s.o.Start(ctx, opBlobUploadReader)
	r, err := s.up.Reader(ctx, u)
	done(err)
	return r, err
}

func (s *uploadStore) Commit(ctx context.Context, u *registry.Upload, d digest.Digest) (string, error) {
	ctx, done := s.o.Start(ctx, opBlobUploadCommit)
	k, err := s.up.Commit(ctx, u, d)
	done(err)
	return k, err
}

func (s *uploadStore) Abort(ctx context.Context, u *registry.Upload) error {
	ctx, done := s.o.Start(ctx, opBlobUploadAbort)
	err := s.up.Abort(ctx, u)
	done(err)
	return err
}

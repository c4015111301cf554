package metrics

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// op is one instrumented store operation, its series resolved once.
type op struct {
	dur  prometheus.Observer
	errs prometheus.Counter
}

func (m *Metrics) op(store, name string) op {
	return op{dur: m.storeDur.WithLabelValues(store, name), errs: m.storeErrs.WithLabelValues(store, name)}
}

// done records one call that started at start and ended with err.
func (o op) done(start time.Time, err error) {
	o.dur.Observe(time.Since(start).Seconds())
	if err != nil && !expected(err) {
		o.errs.Inc()
	}
}

// expected errors are answers, not failures of the store.
func expected(err error) bool {
	var missing *registry.MissingReferencesError
	var oe *oci.Error
	return errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrConflict) ||
		errors.Is(err, context.Canceled) || errors.As(err, &missing) || errors.As(err, &oe) ||
		// a client's body that broke off or stalled mid-upload
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded)
}

// ---- metadata store ----

type metaOps struct {
	repoBlob, blob, manifestBlobs, reposWithBlob, commitUpload, linkBlob, unlinkBlob,
	putManifest, manifest, deleteManifest, deleteTag, tags, repositories, referrers,
	createUpload, upload, updateUpload, deleteUpload, expiredUploads, ping, touchBlob op
}

// MetadataStore times every call of a registry.MetadataStore. The
// optional interfaces the registry and cmd/wharf look for
// (registry.BlobToucher, registry.ChangeFeed) are implemented by the
// result exactly when inner implements them; Unwrap returns inner.
func (m *Metrics) MetadataStore(inner registry.MetadataStore) registry.MetadataStore {
	o := func(name string) op { return m.op("metadata", name) }
	s := &metaStore{inner: inner, o: metaOps{
		repoBlob: o("repo_blob"), blob: o("blob"), manifestBlobs: o("manifest_blobs"), reposWithBlob: o("repos_with_blob"),
		commitUpload: o("commit_upload"), linkBlob: o("link_blob"), unlinkBlob: o("unlink_blob"),
		putManifest: o("put_manifest"), manifest: o("manifest"), deleteManifest: o("delete_manifest"), deleteTag: o("delete_tag"),
		tags: o("tags"), repositories: o("repositories"), referrers: o("referrers"),
		createUpload: o("create_upload"), upload: o("upload"), updateUpload: o("update_upload"), deleteUpload: o("delete_upload"),
		expiredUploads: o("expired_uploads"), ping: o("ping"), touchBlob: o("touch_blob"),
	}}
	t, touches := inner.(registry.BlobToucher)
	f, feeds := inner.(registry.ChangeFeed)
	switch {
	case touches && feeds:
		return &metaToucherFeed{metaStore: s, t: t, f: f}
	case touches:
		return &metaToucher{metaStore: s, t: t}
	case feeds:
		return &metaFeed{metaStore: s, f: f}
	}
	return s
}

type metaStore struct {
	inner registry.MetadataStore
	o     metaOps
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
	start := time.Now()
	err := t.TouchBlob(ctx, d)
	s.o.touchBlob.done(start, err)
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
	start := time.Now()
	b, err := s.inner.RepoBlob(ctx, repo, d)
	s.o.repoBlob.done(start, err)
	return b, err
}

func (s *metaStore) Blob(ctx context.Context, d digest.Digest) (registry.BlobInfo, error) {
	start := time.Now()
	b, err := s.inner.Blob(ctx, d)
	s.o.blob.done(start, err)
	return b, err
}

func (s *metaStore) ManifestBlobs(ctx context.Context, repo string, manifest digest.Digest) ([]registry.BlobInfo, error) {
	start := time.Now()
	b, err := s.inner.ManifestBlobs(ctx, repo, manifest)
	s.o.manifestBlobs.done(start, err)
	return b, err
}

func (s *metaStore) ReposWithBlob(ctx context.Context, d digest.Digest, limit int) ([]string, error) {
	start := time.Now()
	r, err := s.inner.ReposWithBlob(ctx, d, limit)
	s.o.reposWithBlob.done(start, err)
	return r, err
}

func (s *metaStore) CommitUpload(ctx context.Context, uploadID string, info registry.BlobInfo) (registry.BlobInfo, error) {
	start := time.Now()
	b, err := s.inner.CommitUpload(ctx, uploadID, info)
	s.o.commitUpload.done(start, err)
	return b, err
}

func (s *metaStore) LinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	start := time.Now()
	err := s.inner.LinkBlob(ctx, repo, d)
	s.o.linkBlob.done(start, err)
	return err
}

func (s *metaStore) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	start := time.Now()
	err := s.inner.UnlinkBlob(ctx, repo, d)
	s.o.unlinkBlob.done(start, err)
	return err
}

func (s *metaStore) PutManifest(ctx context.Context, repo string, m registry.NewManifest) error {
	start := time.Now()
	err := s.inner.PutManifest(ctx, repo, m)
	s.o.putManifest.done(start, err)
	return err
}

func (s *metaStore) Manifest(ctx context.Context, repo string, ref oci.Reference) (registry.ManifestRecord, error) {
	start := time.Now()
	r, err := s.inner.Manifest(ctx, repo, ref)
	s.o.manifest.done(start, err)
	return r, err
}

func (s *metaStore) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	start := time.Now()
	err := s.inner.DeleteManifest(ctx, repo, d)
	s.o.deleteManifest.done(start, err)
	return err
}

func (s *metaStore) DeleteTag(ctx context.Context, repo, tag string) error {
	start := time.Now()
	err := s.inner.DeleteTag(ctx, repo, tag)
	s.o.deleteTag.done(start, err)
	return err
}

func (s *metaStore) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	start := time.Now()
	t, err := s.inner.Tags(ctx, repo, last, n)
	s.o.tags.done(start, err)
	return t, err
}

func (s *metaStore) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	start := time.Now()
	r, err := s.inner.Repositories(ctx, last, n)
	s.o.repositories.done(start, err)
	return r, err
}

func (s *metaStore) Referrers(ctx context.Context, repo string, d digest.Digest) ([]oci.Descriptor, error) {
	start := time.Now()
	r, err := s.inner.Referrers(ctx, repo, d)
	s.o.referrers.done(start, err)
	return r, err
}

func (s *metaStore) CreateUpload(ctx context.Context, u *registry.Upload) error {
	start := time.Now()
	err := s.inner.CreateUpload(ctx, u)
	s.o.createUpload.done(start, err)
	return err
}

func (s *metaStore) Upload(ctx context.Context, repo, id string) (*registry.Upload, error) {
	start := time.Now()
	u, err := s.inner.Upload(ctx, repo, id)
	s.o.upload.done(start, err)
	return u, err
}

func (s *metaStore) UpdateUpload(ctx context.Context, u *registry.Upload, prevOffset int64) error {
	start := time.Now()
	err := s.inner.UpdateUpload(ctx, u, prevOffset)
	s.o.updateUpload.done(start, err)
	return err
}

func (s *metaStore) DeleteUpload(ctx context.Context, id string) error {
	start := time.Now()
	err := s.inner.DeleteUpload(ctx, id)
	s.o.deleteUpload.done(start, err)
	return err
}

func (s *metaStore) ExpiredUploads(ctx context.Context, before time.Time, limit int) ([]*registry.Upload, error) {
	start := time.Now()
	u, err := s.inner.ExpiredUploads(ctx, before, limit)
	s.o.expiredUploads.done(start, err)
	return u, err
}

func (s *metaStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.inner.Ping(ctx)
	s.o.ping.done(start, err)
	return err
}

func (s *metaStore) Close() error { return s.inner.Close() }

// ---- blob store ----

// Pinger is implemented by stores with a cheap reachability check.
type Pinger interface {
	Ping(ctx context.Context) error
}

type blobOps struct {
	open, del, begin, appendOp, reader, commit, abort, ping op
}

// BlobStore times every call of a registry.BlobStore and its upload
// half. Readers it opens are handed out unwrapped (a file stays an
// *os.File, so downloads keep sendfile). The result implements Pinger
// exactly when inner does; Unwrap returns inner.
func (m *Metrics) BlobStore(inner registry.BlobStore) registry.BlobStore {
	o := func(name string) op { return m.op("blob", name) }
	s := &blobStore{inner: inner, up: inner.Uploads(), o: blobOps{
		open: o("open"), del: o("delete"), begin: o("upload_begin"), appendOp: o("upload_append"),
		reader: o("upload_reader"), commit: o("upload_commit"), abort: o("upload_abort"), ping: o("ping"),
	}}
	if p, ok := inner.(Pinger); ok {
		return &blobPinger{blobStore: s, p: p}
	}
	return s
}

type blobStore struct {
	inner registry.BlobStore
	up    registry.UploadStore
	o     blobOps
}

type blobPinger struct {
	*blobStore
	p Pinger
}

func (s *blobPinger) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.p.Ping(ctx)
	s.o.ping.done(start, err)
	return err
}

// Unwrap returns the instrumented store.
func (s *blobStore) Unwrap() registry.BlobStore { return s.inner }

func (s *blobStore) Open(ctx context.Context, key string) (registry.ReadSeekCloser, error) {
	start := time.Now()
	r, err := s.inner.Open(ctx, key)
	s.o.open.done(start, err)
	return r, err
}

func (s *blobStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.inner.Delete(ctx, key)
	s.o.del.done(start, err)
	return err
}

func (s *blobStore) Uploads() registry.UploadStore { return (*uploadStore)(s) }

// uploadStore is the upload half of blobStore.
type uploadStore blobStore

func (s *uploadStore) Begin(ctx context.Context, u *registry.Upload) error {
	start := time.Now()
	err := s.up.Begin(ctx, u)
	s.o.begin.done(start, err)
	return err
}

func (s *uploadStore) Append(ctx context.Context, u *registry.Upload, r io.Reader) (int64, error) {
	start := time.Now()
	n, err := s.up.Append(ctx, u, r)
	s.o.appendOp.done(start, err)
	return n, err
}

func (s *uploadStore) Reader(ctx context.Context, u *registry.Upload) (io.ReadCloser, error) {
	start := time.Now()
	r, err := s.up.Reader(ctx, u)
	s.o.reader.done(start, err)
	return r, err
}

func (s *uploadStore) Commit(ctx context.Context, u *registry.Upload, d digest.Digest) (string, error) {
	start := time.Now()
	k, err := s.up.Commit(ctx, u, d)
	s.o.commit.done(start, err)
	return k, err
}

func (s *uploadStore) Abort(ctx context.Context, u *registry.Upload) error {
	start := time.Now()
	err := s.up.Abort(ctx, u)
	s.o.abort.done(start, err)
	return err
}

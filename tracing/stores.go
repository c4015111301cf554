package tracing

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// tracer starts the child spans of store operations.
type tracer struct{ t trace.Tracer }

// start begins a child span of the span in ctx; when ctx carries no
// recording span (an unsampled request, a background job) it returns ctx
// and a nil span: no span is made.
func (t tracer) start(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return t.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// end ends sp (if any), marking it failed when err is a failure of the
// store rather than an answer.
func end(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil && !expected(err) {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, "store error")
	}
	sp.End()
}

// expected errors are answers, not failures of the store (as in metrics).
func expected(err error) bool {
	var missing *registry.MissingReferencesError
	var oe *oci.Error
	return errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrConflict) ||
		errors.Is(err, context.Canceled) || errors.As(err, &missing) || errors.As(err, &oe) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded)
}

// ---- metadata store ----

// MetadataStore makes a child span ("metadata.<operation>") of every call
// of a registry.MetadataStore made inside a recording span. The optional
// interfaces the registry and cmd/wharf look for (registry.BlobToucher,
// registry.ChangeFeed) are implemented by the result exactly when inner
// implements them; Unwrap returns inner.
func MetadataStore(t trace.Tracer, inner registry.MetadataStore) registry.MetadataStore {
	s := &metaStore{inner: inner, t: tracer{t}}
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

// BlobStore makes a child span ("blob.<operation>") of every call of a
// registry.BlobStore and its upload half made inside a recording span.
// Readers it opens are handed out unwrapped (sendfile stays possible). The
// result implements Pinger exactly when inner does; Unwrap returns inner.
func BlobStore(t trace.Tracer, inner registry.BlobStore) registry.BlobStore {
	s := &blobStore{inner: inner, up: inner.Uploads(), t: tracer{t}}
	if p, ok := inner.(Pinger); ok {
		return &blobPinger{blobStore: s, p: p}
	}
	return s
}

type metaStore struct {
	inner registry.MetadataStore
	t     tracer
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
	ctx, sp := s.t.start(ctx, "metadata.touch_blob")
	err := t.TouchBlob(ctx, d)
	end(sp, err)
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
	ctx, sp := s.t.start(ctx, "metadata.repo_blob")
	b, err := s.inner.RepoBlob(ctx, repo, d)
	end(sp, err)
	return b, err
}

func (s *metaStore) Blob(ctx context.Context, d digest.Digest) (registry.BlobInfo, error) {
	ctx, sp := s.t.start(ctx, "metadata.blob")
	b, err := s.inner.Blob(ctx, d)
	end(sp, err)
	return b, err
}

func (s *metaStore) ManifestBlobs(ctx context.Context, repo string, manifest digest.Digest) ([]registry.BlobInfo, error) {
	ctx, sp := s.t.start(ctx, "metadata.manifest_blobs")
	b, err := s.inner.ManifestBlobs(ctx, repo, manifest)
	end(sp, err)
	return b, err
}

func (s *metaStore) ReposWithBlob(ctx context.Context, d digest.Digest, limit int) ([]string, error) {
	ctx, sp := s.t.start(ctx, "metadata.repos_with_blob")
	r, err := s.inner.ReposWithBlob(ctx, d, limit)
	end(sp, err)
	return r, err
}

func (s *metaStore) CommitUpload(ctx context.Context, uploadID string, info registry.BlobInfo) (registry.BlobInfo, error) {
	ctx, sp := s.t.start(ctx, "metadata.commit_upload")
	b, err := s.inner.CommitUpload(ctx, uploadID, info)
	end(sp, err)
	return b, err
}

func (s *metaStore) LinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	ctx, sp := s.t.start(ctx, "metadata.link_blob")
	err := s.inner.LinkBlob(ctx, repo, d)
	end(sp, err)
	return err
}

func (s *metaStore) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error {
	ctx, sp := s.t.start(ctx, "metadata.unlink_blob")
	err := s.inner.UnlinkBlob(ctx, repo, d)
	end(sp, err)
	return err
}

func (s *metaStore) PutManifest(ctx context.Context, repo string, m registry.NewManifest) error {
	ctx, sp := s.t.start(ctx, "metadata.put_manifest")
	err := s.inner.PutManifest(ctx, repo, m)
	end(sp, err)
	return err
}

func (s *metaStore) Manifest(ctx context.Context, repo string, ref oci.Reference) (registry.ManifestRecord, error) {
	ctx, sp := s.t.start(ctx, "metadata.manifest")
	r, err := s.inner.Manifest(ctx, repo, ref)
	end(sp, err)
	return r, err
}

func (s *metaStore) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	ctx, sp := s.t.start(ctx, "metadata.delete_manifest")
	err := s.inner.DeleteManifest(ctx, repo, d)
	end(sp, err)
	return err
}

func (s *metaStore) DeleteTag(ctx context.Context, repo, tag string) error {
	ctx, sp := s.t.start(ctx, "metadata.delete_tag")
	err := s.inner.DeleteTag(ctx, repo, tag)
	end(sp, err)
	return err
}

func (s *metaStore) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	ctx, sp := s.t.start(ctx, "metadata.tags")
	t, err := s.inner.Tags(ctx, repo, last, n)
	end(sp, err)
	return t, err
}

func (s *metaStore) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	ctx, sp := s.t.start(ctx, "metadata.repositories")
	r, err := s.inner.Repositories(ctx, last, n)
	end(sp, err)
	return r, err
}

func (s *metaStore) Referrers(ctx context.Context, repo string, d digest.Digest) ([]oci.Descriptor, error) {
	ctx, sp := s.t.start(ctx, "metadata.referrers")
	r, err := s.inner.Referrers(ctx, repo, d)
	end(sp, err)
	return r, err
}

func (s *metaStore) CreateUpload(ctx context.Context, u *registry.Upload) error {
	ctx, sp := s.t.start(ctx, "metadata.create_upload")
	err := s.inner.CreateUpload(ctx, u)
	end(sp, err)
	return err
}

func (s *metaStore) Upload(ctx context.Context, repo, id string) (*registry.Upload, error) {
	ctx, sp := s.t.start(ctx, "metadata.upload")
	u, err := s.inner.Upload(ctx, repo, id)
	end(sp, err)
	return u, err
}

func (s *metaStore) UpdateUpload(ctx context.Context, u *registry.Upload, prevOffset int64) error {
	ctx, sp := s.t.start(ctx, "metadata.update_upload")
	err := s.inner.UpdateUpload(ctx, u, prevOffset)
	end(sp, err)
	return err
}

func (s *metaStore) DeleteUpload(ctx context.Context, id string) error {
	ctx, sp := s.t.start(ctx, "metadata.delete_upload")
	err := s.inner.DeleteUpload(ctx, id)
	end(sp, err)
	return err
}

func (s *metaStore) ExpiredUploads(ctx context.Context, before time.Time, limit int) ([]*registry.Upload, error) {
	ctx, sp := s.t.start(ctx, "metadata.expired_uploads")
	u, err := s.inner.ExpiredUploads(ctx, before, limit)
	end(sp, err)
	return u, err
}

func (s *metaStore) Ping(ctx context.Context) error {
	ctx, sp := s.t.start(ctx, "metadata.ping")
	err := s.inner.Ping(ctx)
	end(sp, err)
	return err
}

func (s *metaStore) Close() error { return s.inner.Close() }

type blobStore struct {
	inner registry.BlobStore
	up    registry.UploadStore
	t     tracer
}

type blobPinger struct {
	*blobStore
	p Pinger
}

func (s *blobPinger) Ping(ctx context.Context) error {
	ctx, sp := s.t.start(ctx, "blob.ping")
	err := s.p.Ping(ctx)
	end(sp, err)
	return err
}

// Unwrap returns the instrumented store.
func (s *blobStore) Unwrap() registry.BlobStore { return s.inner }

func (s *blobStore) Open(ctx context.Context, key string) (registry.ReadSeekCloser, error) {
	ctx, sp := s.t.start(ctx, "blob.open")
	r, err := s.inner.Open(ctx, key)
	end(sp, err)
	return r, err
}

func (s *blobStore) Delete(ctx context.Context, key string) error {
	ctx, sp := s.t.start(ctx, "blob.delete")
	err := s.inner.Delete(ctx, key)
	end(sp, err)
	return err
}

func (s *blobStore) Uploads() registry.UploadStore { return (*uploadStore)(s) }

// uploadStore is the upload half of blobStore.
type uploadStore blobStore

func (s *uploadStore) Begin(ctx context.Context, u *registry.Upload) error {
	ctx, sp := s.t.start(ctx, "blob.upload_begin")
	err := s.up.Begin(ctx, u)
	end(sp, err)
	return err
}

func (s *uploadStore) Append(ctx context.Context, u *registry.Upload, r io.Reader) (int64, error) {
	ctx, sp := s.t.start(ctx, "blob.upload_append")
	n, err := s.up.Append(ctx, u, r)
	end(sp, err)
	return n, err
}

func (s *uploadStore) Reader(ctx context.Context, u *registry.Upload) (io.ReadCloser, error) {
	ctx, sp := s.t.start(ctx, "blob.upload_reader")
	r, err := s.up.Reader(ctx, u)
	end(sp, err)
	return r, err
}

func (s *uploadStore) Commit(ctx context.Context, u *registry.Upload, d digest.Digest) (string, error) {
	ctx, sp := s.t.start(ctx, "blob.upload_commit")
	k, err := s.up.Commit(ctx, u, d)
	end(sp, err)
	return k, err
}

func (s *uploadStore) Abort(ctx context.Context, u *registry.Upload) error {
	ctx, sp := s.t.start(ctx, "blob.upload_abort")
	err := s.up.Abort(ctx, u)
	end(sp, err)
	return err
}

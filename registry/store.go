package registry

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// ErrNotFound is returned by stores for a missing row or object.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by a store when a conditional write lost a race
// (an upload advanced by another request, say).
var ErrConflict = errors.New("conflict")

// ErrUnavailable is wrapped by a store around an error that says the
// backend cannot be reached now (connection refused or reset, a server
// shutting down or starting, a timeout), so callers can answer "try again"
// without knowing the driver.
var ErrUnavailable = errors.New("store unavailable")

// ErrInsufficientStorage is wrapped by a blob store around an error that
// says it is out of space (ENOSPC, a quota).
var ErrInsufficientStorage = errors.New("insufficient storage")

// BlobStore holds content-addressed bytes. Where a blob lives (its key) is
// recorded in the metadata store, so a finished upload never has to be
// copied: the store says where it put it and the metadata remembers.
type BlobStore interface {
	// Open returns the object at key for reading. It is seekable so the
	// HTTP layer can serve Range requests; a filesystem store returns an
	// *os.File so responses can use sendfile.
	Open(ctx context.Context, key string) (ReadSeekCloser, error)
	// Delete removes the object at key. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// Uploads returns the upload half of the store.
	Uploads() UploadStore
}

// ReadSeekCloser is the reader a BlobStore hands out.
type ReadSeekCloser = io.ReadSeekCloser

// UploadStore writes blobs in sessions that survive a restart: everything a
// session needs is in the Upload value, which the metadata store persists
// after every successful write.
type UploadStore interface {
	// Begin prepares storage for a new session and fills u.Backend.
	Begin(ctx context.Context, u *Upload) error
	// Lock holds the session against every other writer, in this process
	// or another sharing the store, until unlock is called: the registry
	// takes it before it reads a session's state to append or commit, so
	// that no two requests can ever write one session's bytes at once
	// (ErrConflict when another holds it). A session whose storage is gone
	// needs no lock. A store whose writes are fenced otherwise (each S3 part is
	// checked against its recorded ETag, every object key is unique to its
	// session) may return a no-op.
	Lock(ctx context.Context, u *Upload) (unlock func(), err error)
	// Append writes r at u.Offset and returns the number of bytes written.
	// On success it may update u.Backend; the caller persists u. Bytes past a
	// persisted offset (a write the server crashed in the middle of) are
	// discarded by the next Append.
	Append(ctx context.Context, u *Upload, r io.Reader) (int64, error)
	// Reader reads the first u.Offset bytes of the session back (to hash
	// them with another algorithm than the one chosen at the start).
	Reader(ctx context.Context, u *Upload) (io.ReadCloser, error)
	// Commit makes the session's bytes durable as the blob d and returns its
	// key. It must not copy the bytes when the backend can avoid it, and it
	// never replaces an object already stored under another session's
	// commit: when one is, that object stays and its key is returned. It
	// is idempotent: called again for a session it already committed (the
	// metadata commit after it failed, the client retried) it returns the
	// same key.
	Commit(ctx context.Context, u *Upload, d digest.Digest) (key string, err error)
	// Abort releases the session's storage.
	Abort(ctx context.Context, u *Upload) error
}

// Upload is the persisted state of an upload session.
type Upload struct {
	ID   string
	Repo string
	// Offset is the number of bytes received and durably written.
	Offset int64
	// HashAlg and HashState are the streaming digest so far
	// (encoding.BinaryMarshaler state of the hash).
	HashAlg   digest.Algorithm
	HashState []byte
	// Backend is the blob store's own state (a multipart upload id, parts).
	Backend   []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// BlobInfo is where a blob lives and how big it is.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
	Key    string
}

// ManifestRecord is a stored manifest.
type ManifestRecord struct {
	Digest       digest.Digest
	MediaType    string
	Payload      []byte
	ArtifactType string
	Subject      digest.Digest
	Annotations  map[string]string
	CreatedAt    time.Time
	// Stale: a pull-through cache's copy served because upstream could
	// not confirm the tag (the server adds a Warning header).
	Stale bool
}

// NewManifest describes a manifest to store and what it references.
type NewManifest struct {
	Record ManifestRecord
	// Blobs must all be linked to the repository.
	Blobs []digest.Digest
	// Children must all be manifests of the repository.
	Children []digest.Digest
	// Tags are pointed at the manifest in the same transaction.
	Tags []string
	// Cached marks a pull-through cache's copy of an upstream manifest:
	// its blobs and children need not be present yet (they are fetched
	// when first pulled), so the store does not check them.
	Cached bool
}

// MissingReferencesError lists what a manifest referenced that is absent.
type MissingReferencesError struct {
	Blobs     []digest.Digest
	Manifests []digest.Digest
}

func (e *MissingReferencesError) Error() string { return "manifest references unknown content" }

// MetadataStore is the transactional store for everything but blob bytes.
// Every method is atomic: a failure changes nothing.
type MetadataStore interface {
	// RepoBlob returns a blob the repository may serve.
	RepoBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error)
	// Blob returns a blob that some repository still serves (the signed
	// download route: a URL stops working with the blob's last link,
	// before garbage collection removes the bytes).
	Blob(ctx context.Context, d digest.Digest) (BlobInfo, error)
	// ManifestBlobs returns the blobs a manifest references that the
	// repository still serves, in no particular order.
	ManifestBlobs(ctx context.Context, repo string, manifest digest.Digest) ([]BlobInfo, error)
	// ReposWithBlob lists up to limit repositories that hold d.
	ReposWithBlob(ctx context.Context, d digest.Digest, limit int) ([]string, error)
	// CommitUpload records the blob produced by upload (or, when another
	// upload stored it first, keeps that one), links it to the upload's
	// repository and deletes the session. It returns the blob as recorded;
	// when its Key differs from info.Key the caller's object is redundant.
	CommitUpload(ctx context.Context, uploadID string, info BlobInfo) (BlobInfo, error)
	// LinkBlob makes a blob already in the registry servable from repo.
	LinkBlob(ctx context.Context, repo string, d digest.Digest) error
	// UnlinkBlob stops repo serving d. ErrNotFound if it did not.
	UnlinkBlob(ctx context.Context, repo string, d digest.Digest) error

	// PutManifest stores a manifest (idempotently) and optionally tags it,
	// after checking its references; a *MissingReferencesError if any are
	// missing.
	PutManifest(ctx context.Context, repo string, m NewManifest) error
	// Manifest returns a manifest by tag or digest.
	Manifest(ctx context.Context, repo string, ref oci.Reference) (ManifestRecord, error)
	// DeleteManifest removes a manifest and every tag pointing at it.
	DeleteManifest(ctx context.Context, repo string, d digest.Digest) error
	// DeleteTag removes one tag; the manifest stays.
	DeleteTag(ctx context.Context, repo, tag string) error
	// Tags lists a repository's tags in lexical order after last, at most n
	// (n < 0: all). ErrNotFound when the repository does not exist.
	Tags(ctx context.Context, repo, last string, n int) ([]string, error)
	// Repositories lists repository names in lexical order after last.
	Repositories(ctx context.Context, last string, n int) ([]string, error)
	// Referrers lists the manifests whose subject is d.
	Referrers(ctx context.Context, repo string, d digest.Digest) ([]oci.Descriptor, error)

	// CreateUpload persists a new session.
	CreateUpload(ctx context.Context, u *Upload) error
	// Upload returns a session of repo. ErrNotFound if unknown.
	Upload(ctx context.Context, repo, id string) (*Upload, error)
	// UpdateUpload persists u if the stored offset is still prevOffset
	// (ErrConflict otherwise), so two writers cannot both advance a session.
	UpdateUpload(ctx context.Context, u *Upload, prevOffset int64) error
	// DeleteUpload forgets a session; ErrNotFound if it was already gone
	// (committed, or deleted by another request), so that exactly one
	// caller goes on to release its storage.
	DeleteUpload(ctx context.Context, id string) error
	// ExpiredUploads lists sessions not updated since before.
	ExpiredUploads(ctx context.Context, before time.Time, limit int) ([]*Upload, error)

	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}

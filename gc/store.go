package gc

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
)

// Store is the bookkeeping the collector needs. The SQL metadata store
// (metadata/sqlstore, SQLite and PostgreSQL) implements it; gctest is the
// contract both run.
type Store interface {
	BlobCandidatesAfter(ctx context.Context, before time.Time, after QueuedBlob, limit int) ([]QueuedBlob, error)
	CollectBlobs(ctx context.Context, ds []digest.Digest, before time.Time) ([]registry.BlobInfo, error)
	PendingBlobDeletionsAfter(ctx context.Context, after digest.Digest, limit int) ([]PendingDeletion, error)
	FinishBlobDeletions(ctx context.Context, ds []digest.Digest, before time.Time, del func(key string) error, workers int) (int, error)
	ForgetReviews(ctx context.Context, before time.Time) (int64, error)
	UntaggedCandidatesAfter(ctx context.Context, before time.Time, after QueuedManifest, limit int) ([]QueuedManifest, error)
	SettleManifests(ctx context.Context, refs []ManifestRef) (int, error)
	Rescan(ctx context.Context, page int, countOnly bool) (Rescanned, error)
	BlobsFreedBy(ctx context.Context, refs []ManifestRef, before time.Time) ([]digest.Digest, error)
	CollectManifest(ctx context.Context, ref ManifestRef, before time.Time) (bool, error)
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// The types Store speaks in are the collector's, as a metadata store's
// are package registry's: the store imports them, never the other way.

// QueuedBlob is an entry of the blob review queue.
type QueuedBlob struct {
	Digest digest.Digest
	// ReviewFrom (Unix nanoseconds) is when the review delay started
	// counting; with Digest, the queue's order and a pass's cursor.
	ReviewFrom int64
	// Garbage: when listed, the blob looked collectable (no manifest
	// references it, created and touched before the cut-off). Only a
	// review under lock decides; a dry run lists these.
	Garbage bool
}

// PendingDeletion is a storage object the database no longer references.
type PendingDeletion struct {
	Digest digest.Digest
	Key    string
}

// ManifestRef names a manifest in a repository.
type ManifestRef struct {
	Repo   string
	Digest digest.Digest
}

// QueuedManifest is an entry of the manifest review queue.
type QueuedManifest struct {
	ManifestRef
	// ReviewFrom (Unix nanoseconds) is the manifest's creation, which
	// gc.untagged_after counts from; with the ref, the queue's order.
	ReviewFrom int64
	// Garbage: when listed, the manifest looked collectable (untagged,
	// old enough, kept by no index and no live subject). Only a review
	// under lock decides; a dry run lists these.
	Garbage bool
}

// Rescanned counts what a rescan queued (counting only: would queue).
type Rescanned struct {
	Blobs, Manifests int64
}

package sqlstore

import (
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/registry"
)

// Garbage collection bookkeeping (see package gc for the model). Every
// decision to delete is re-checked inside a write transaction that holds
// the row locks concurrent writers take (PutManifest and LinkBlob lock
// blob rows FOR SHARE, TouchBlob the gc_blob_reviews row), so a reference
// added meanwhile either commits first and is seen, or waits and then
// finds the blob gone.
//
// Candidates come from review queues (gc_blob_queue, gc_manifest_queue,
// migration 0003) that the writes in this package feed in their own
// transactions; nothing here scans all blobs or manifests except Rescan,
// the queues' paged safety net (run on demand, on a lease takeover and
// daily).
//
// gc_queue.go feeds the queues, gc_blobs.go reviews queued blobs,
// gc_sweep.go deletes the storage objects of collected ones,
// gc_manifests.go reviews untagged manifests, gc_rescan.go is the safety
// net and lease.go the lease background maintenance runs under.

var (
	_ gc.Store             = (*Store)(nil)
	_ registry.BlobToucher = (*Store)(nil)
)

// inList returns "?, ?, ..." for n values.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string, extra ...any) []any {
	out := make([]any, 0, len(ss)+len(extra))
	for _, s := range ss {
		out = append(out, s)
	}
	return append(out, extra...)
}

func sortedUnique(ds []digest.Digest) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, string(d))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// skipLocked is FOR UPDATE SKIP LOCKED where the engine has row locks: a
// row another transaction holds (a manifest PUT or a link locking a blob
// FOR SHARE, an upload touching it) is in use, so not garbage now; the
// collector leaves it to a later pass instead of waiting (and never waits
// on several rows in an order a writer could cross).
func (s *Store) skipLocked() string {
	if s.dialect.RowLocks {
		return ` FOR UPDATE SKIP LOCKED`
	}
	return ``
}

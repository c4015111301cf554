package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

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
// daily), and UnreferencedBlobs, an audit.

var _ registry.BlobToucher = (*Store)(nil)

// TouchBlob implements registry.BlobToucher. It leaves the review queue
// alone: the CommitUpload or LinkBlob that follows a touch queues the blob
// with a later review time, and a review re-checks the touch anyway.
func (s *Store) TouchBlob(ctx context.Context, d digest.Digest) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_reviews (digest, touched_at) VALUES (?, ?)
			ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at`), string(d), now())
		return err
	})
}

// The review queues (gc_blob_queue, gc_manifest_queue) are fed by every
// change that can make garbage, in the change's own transaction, so a
// pass looks only at what changed. Upserts keep one entry per blob or
// manifest, with the later review time.
const (
	blobQueueUpsert     = ` ON CONFLICT (digest) DO UPDATE SET review_from = excluded.review_from WHERE excluded.review_from > gc_blob_queue.review_from`
	manifestQueueUpsert = ` ON CONFLICT (repo, digest) DO UPDATE SET review_from = excluded.review_from WHERE excluded.review_from > gc_manifest_queue.review_from`
)

// queueBlob queues d for review, its review delay counting from at.
func (s *Store) queueBlob(ctx context.Context, tx *sql.Tx, d digest.Digest, at int64) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_queue (digest, review_from) VALUES (?, ?)`+blobQueueUpsert), string(d), at)
	return err
}

// queueManifest queues the manifest repo@d, if it exists, for an untagged
// review; the delay (gc.untagged_after) counts from its creation.
func (s *Store) queueManifest(ctx context.Context, tx *sql.Tx, repo, d string) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_manifest_queue (repo, digest, review_from)
		SELECT m.repo, m.digest, m.created_at FROM manifests m WHERE m.repo = ? AND m.digest = ?`+manifestQueueUpsert), repo, d)
	return err
}

// queueUnreferencedBlob is queueBlob for a blob that no manifest
// references, and nothing otherwise: a mount of a referenced blob (a
// popular base layer, say) neither writes nor locks its queue row, so
// mounts of one blob do not queue behind each other. Deleting the last
// manifest that references the blob queues it (queueFreedBy), and a
// review re-checks the mount's touch.
func (s *Store) queueUnreferencedBlob(ctx context.Context, tx *sql.Tx, d digest.Digest, at int64) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_queue (digest, review_from)
		SELECT CAST(? AS TEXT), CAST(? AS BIGINT) WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = ?)`+blobQueueUpsert),
		string(d), at, string(d))
	return err
}

// queueFreedBy queues what deleting the manifest repo@d may leave
// garbage: the blobs it references (their delay counting from their
// creation, as if no manifest had ever referenced them, so a pass that
// deletes a manifest collects its old blobs too), the manifests it lists
// (an index's children) and its referrers. It runs before the manifest's
// reference rows are deleted. Each upsert takes its rows in key order, the
// order every writer of several queue rows uses, so two deletions sharing
// blobs or children wait for each other instead of deadlocking.
func (s *Store) queueFreedBy(ctx context.Context, tx *sql.Tx, repo, d string) error {
	for _, q := range []string{
		`INSERT INTO gc_blob_queue (digest, review_from)
			SELECT b.digest, b.created_at FROM blobs b
			WHERE b.digest IN (SELECT mb.blob_digest FROM manifest_blobs mb WHERE mb.repo = ? AND mb.manifest_digest = ?)
			ORDER BY b.digest` + blobQueueUpsert,
		`INSERT INTO gc_manifest_queue (repo, digest, review_from)
			SELECT m.repo, m.digest, m.created_at FROM manifests m
			WHERE m.repo = ? AND m.digest IN (SELECT c.child_digest FROM manifest_children c WHERE c.repo = m.repo AND c.parent_digest = ?)
			ORDER BY m.repo, m.digest` + manifestQueueUpsert,
		`INSERT INTO gc_manifest_queue (repo, digest, review_from)
			SELECT m.repo, m.digest, m.created_at FROM manifests m WHERE m.repo = ? AND m.subject = ?
			ORDER BY m.repo, m.digest` + manifestQueueUpsert,
	} {
		if _, err := tx.ExecContext(ctx, s.q(q), repo, d); err != nil {
			return err
		}
	}
	return nil
}

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

// blobGarbage is 1 when the queued blob q looks collectable at cut-off ?.
const blobGarbage = `CASE WHEN EXISTS (SELECT 1 FROM blobs b WHERE b.digest = q.digest AND b.created_at < ?)
		AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = q.digest)
		AND NOT EXISTS (SELECT 1 FROM gc_blob_reviews r WHERE r.digest = q.digest AND r.touched_at >= ?) THEN 1 ELSE 0 END`

// BlobCandidatesAfter lists up to limit blob queue entries due for review
// (review delay counting from before them), after the entry after (the
// zero QueuedBlob starts from the beginning), in (ReviewFrom, Digest)
// order. It reads the queue's index only, so its cost follows what
// changed, not how many blobs there are. A pass pages through with it and
// hands every entry to CollectBlobs, which removes it or moves it later,
// so each is visited once.
func (s *Store) BlobCandidatesAfter(ctx context.Context, before time.Time, after QueuedBlob, limit int) ([]QueuedBlob, error) {
	b := before.UnixNano()
	query := `SELECT q.digest, q.review_from, ` + blobGarbage + ` FROM gc_blob_queue q WHERE q.review_from < ?`
	args := []any{b, b, b}
	if after.Digest != "" {
		query += ` AND (q.review_from, q.digest) > (?, ?)`
		args = append(args, after.ReviewFrom, string(after.Digest))
	}
	rows, err := s.read.QueryContext(ctx, s.q(query+` ORDER BY q.review_from, q.digest LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueuedBlob
	for rows.Next() {
		var e QueuedBlob
		var d string
		var garbage int
		if err := rows.Scan(&d, &e.ReviewFrom, &garbage); err != nil {
			return nil, err
		}
		e.Digest, e.Garbage = digest.Digest(d), garbage != 0
		out = append(out, e)
	}
	return out, rows.Err()
}

// BlobCandidates lists up to limit queued blobs due for review that look
// collectable (QueuedBlob.Garbage).
func (s *Store) BlobCandidates(ctx context.Context, before time.Time, limit int) ([]digest.Digest, error) {
	b := before.UnixNano()
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT q.digest FROM gc_blob_queue q WHERE q.review_from < ? AND `+blobGarbage+` = 1
		ORDER BY q.review_from, q.digest LIMIT ?`), b, b, b, limit)
	if err != nil {
		return nil, err
	}
	return digests(rows)
}

// UnreferencedBlobs scans every blob for those no manifest references,
// created and untouched before before: an audit of the queue (what a
// pass would miss if a change had not fed it), never used by a pass.
func (s *Store) UnreferencedBlobs(ctx context.Context, before time.Time, limit int) ([]digest.Digest, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT b.digest FROM blobs b
		WHERE b.created_at < ?
		AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest)
		AND NOT EXISTS (SELECT 1 FROM gc_blob_reviews r WHERE r.digest = b.digest AND r.touched_at >= ?)
		ORDER BY b.digest LIMIT ?`), before.UnixNano(), before.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	return digests(rows)
}

func digests(rows *sql.Rows) ([]digest.Digest, error) {
	ss, err := scanStrings(rows)
	out := make([]digest.Digest, len(ss))
	for i, s := range ss {
		out[i] = digest.Digest(s)
	}
	return out, err
}

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

// CollectBlob removes blob d from the database if, under lock, it is still
// unreferenced and untouched since before: its repository links and its
// row go, and its storage key is queued for deletion (FinishBlobDeletion),
// all in one committed transaction. It reports the blob removed, if any.
func (s *Store) CollectBlob(ctx context.Context, d digest.Digest, before time.Time) (registry.BlobInfo, bool, error) {
	got, err := s.CollectBlobs(ctx, []digest.Digest{d}, before)
	if err != nil || len(got) == 0 {
		return registry.BlobInfo{Digest: d}, false, err
	}
	return got[0], true, nil
}

// CollectBlobs is CollectBlob for a batch, in one transaction with a fixed
// number of statements: it locks the queue entries, the review rows and
// then the blob rows of ds (skipping rows other transactions hold),
// re-checks after taking the locks that each blob is still unreferenced,
// untouched and created before before, deletes those blobs' rows and links
// and queues their storage keys, and commits. It returns the blobs removed.
//
// It also settles the queue entries it locked: an entry goes when its blob
// was collected, is referenced (losing that reference queues it again) or
// is gone; it moves to the blob's last touch or creation when that is too
// recent; it stays as it is when a writer holds the blob (a later pass
// looks again). An entry a writer holds is left to that writer.
func (s *Store) CollectBlobs(ctx context.Context, ds []digest.Digest, before time.Time) (out []registry.BlobInfo, err error) {
	all := sortedUnique(ds)
	if len(all) == 0 {
		return nil, nil
	}
	b := before.UnixNano()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		// Review rows exist, so there is a row for TouchBlob to wait on.
		// (First, while this transaction holds no lock: it may wait.)
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_reviews (digest, touched_at) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, 0), ", len(all)), ", ")+` ON CONFLICT (digest) DO NOTHING`), anys(all)...); err != nil {
			return err
		}
		// Queue entries this review may settle. Locked, a writer that
		// queues the blob again meanwhile (a manifest deletion, an upload)
		// waits and queues it anew after this commits.
		rows, err := tx.QueryContext(ctx, s.q(`SELECT digest, review_from FROM gc_blob_queue
			WHERE digest IN (`+inList(len(all))+`) ORDER BY digest`+s.skipLocked()), anys(all)...)
		if err != nil {
			return err
		}
		queued := map[string]int64{}
		for rows.Next() {
			var d string
			var from int64
			if err := rows.Scan(&d, &from); err != nil {
				rows.Close()
				return err
			}
			queued[d] = from
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		later := map[string]int64{} // queued, not due yet: review from then
		rows, err = tx.QueryContext(ctx, s.q(`SELECT digest, touched_at, deleting_key FROM gc_blob_reviews
			WHERE digest IN (`+inList(len(all))+`) ORDER BY digest`+s.skipLocked()), anys(all)...)
		if err != nil {
			return err
		}
		pending := map[string]sql.NullString{}
		var untouched []string
		for rows.Next() {
			var d string
			var touched int64
			var key sql.NullString
			if err := rows.Scan(&d, &touched, &key); err != nil {
				rows.Close()
				return err
			}
			if touched < b {
				pending[d] = key
				untouched = append(untouched, d)
			} else {
				later[d] = touched
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		cands := map[string]registry.BlobInfo{}
		var keys []string
		locked := map[string]bool{}
		if len(untouched) > 0 {
			rows, err = tx.QueryContext(ctx, s.q(`SELECT digest, size, storage_key, created_at FROM blobs
				WHERE digest IN (`+inList(len(untouched))+`) ORDER BY digest`+s.skipLocked()), anys(untouched)...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var d string
				var created int64
				var info registry.BlobInfo
				if err := rows.Scan(&d, &info.Size, &info.Key, &created); err != nil {
					rows.Close()
					return err
				}
				locked[d] = true
				if created >= b {
					later[d] = max(later[d], created)
					continue
				}
				if p := pending[d]; p.Valid && p.String != info.Key {
					// An older object of this digest is still queued for
					// deletion: a later pass collects this one once that is done.
					continue
				}
				info.Digest = digest.Digest(d)
				cands[d] = info
				keys = append(keys, d)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		drop := map[string]bool{}
		// Queued, untouched blobs whose row was not locked: gone (the
		// entry goes), or held by a writer (it stays).
		var unlocked []string
		for _, d := range untouched {
			if _, ok := queued[d]; ok && !locked[d] {
				unlocked = append(unlocked, d)
				drop[d] = true
			}
		}
		if len(unlocked) > 0 {
			rows, err := tx.QueryContext(ctx, s.q(`SELECT digest FROM blobs WHERE digest IN (`+inList(len(unlocked))+`)`), anys(unlocked)...)
			if err != nil {
				return err
			}
			held, err := scanStrings(rows)
			if err != nil {
				return err
			}
			for _, d := range held {
				delete(drop, d)
			}
		}
		if len(keys) > 0 {
			// References, read after the locks: a manifest PUT that locked a
			// blob before us has committed and is seen here; one after us
			// waits and then finds the blob gone.
			rows, err = tx.QueryContext(ctx, s.q(`SELECT DISTINCT blob_digest FROM manifest_blobs WHERE blob_digest IN (`+inList(len(keys))+`)`), anys(keys)...)
			if err != nil {
				return err
			}
			refs, err := scanStrings(rows)
			if err != nil {
				return err
			}
			for _, d := range refs {
				delete(cands, d)
				drop[d] = true
			}
		}
		var final []string
		for _, d := range keys {
			if _, ok := cands[d]; ok {
				final = append(final, d)
				out = append(out, cands[d])
				drop[d] = true
			}
		}
		if len(final) > 0 {
			in := inList(len(final))
			for _, q := range []string{
				`UPDATE gc_blob_reviews SET deleting_key = (SELECT b.storage_key FROM blobs b WHERE b.digest = gc_blob_reviews.digest) WHERE digest IN (` + in + `)`,
				`DELETE FROM repository_blobs WHERE digest IN (` + in + `)`,
				`DELETE FROM blobs WHERE digest IN (` + in + `)`,
			} {
				if _, err := tx.ExecContext(ctx, s.q(q), anys(final)...); err != nil {
					return err
				}
			}
		}
		return s.settleBlobQueue(ctx, tx, queued, drop, later)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// settleBlobQueue applies a review to the queue entries it locked
// (queued): the entries in drop go, those in later move to that time.
func (s *Store) settleBlobQueue(ctx context.Context, tx *sql.Tx, queued map[string]int64, drop map[string]bool, later map[string]int64) error {
	var gone []string
	var moveCase strings.Builder
	var moveArgs []any
	var moved []string
	for d, from := range queued {
		switch t, ok := later[d]; {
		case drop[d]:
			gone = append(gone, d)
		case ok && t > from:
			moveCase.WriteString(` WHEN ? THEN CAST(? AS BIGINT)`)
			moveArgs = append(moveArgs, d, t)
			moved = append(moved, d)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM gc_blob_queue WHERE digest IN (`+inList(len(gone))+`)`), anys(gone)...); err != nil {
			return err
		}
	}
	if len(moved) > 0 {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE gc_blob_queue SET review_from = CASE digest`+moveCase.String()+` ELSE review_from END
			WHERE digest IN (`+inList(len(moved))+`)`), append(moveArgs, anys(moved)...)...); err != nil {
			return err
		}
	}
	return nil
}

// PendingDeletion is a storage object the database no longer references.
type PendingDeletion struct {
	Digest digest.Digest
	Key    string
}

// PendingBlobDeletions lists up to limit queued storage deletions.
func (s *Store) PendingBlobDeletions(ctx context.Context, limit int) ([]PendingDeletion, error) {
	return s.PendingBlobDeletionsAfter(ctx, "", limit)
}

// PendingBlobDeletionsAfter lists up to limit queued storage deletions of
// digests after after ("" from the start), in digest order.
func (s *Store) PendingBlobDeletionsAfter(ctx context.Context, after digest.Digest, limit int) ([]PendingDeletion, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT digest, deleting_key FROM gc_blob_reviews WHERE deleting_key IS NOT NULL AND digest > ? ORDER BY digest LIMIT ?`), string(after), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PendingDeletion
	for rows.Next() {
		var p PendingDeletion
		var d string
		if err := rows.Scan(&d, &p.Key); err != nil {
			return nil, err
		}
		p.Digest = digest.Digest(d)
		out = append(out, p)
	}
	return out, rows.Err()
}

// FinishBlobDeletion deletes the queued storage object of d with del,
// holding the lock TouchBlob waits for. It leaves the object alone (and
// the queue entry, to look again later) while an upload or mount of d
// touched since before may be writing it, and drops the entry without
// deleting when a blob row has come to point at the same object again.
// It reports whether del ran.
func (s *Store) FinishBlobDeletion(ctx context.Context, d digest.Digest, before time.Time, del func(key string) error) (bool, error) {
	n, err := s.FinishBlobDeletions(ctx, []digest.Digest{d}, before, del, 1)
	return n > 0, err
}

// FinishBlobDeletions is FinishBlobDeletion for a batch in one
// transaction: it locks the queued review rows of ds (skipping rows an
// upload holds), runs del for the objects to delete with up to workers
// calls at a time while holding those locks, and then drops the entries
// whose object is gone or live again. An entry whose del failed stays
// queued; the failures are returned joined, after the commit. It reports
// how many objects del deleted.
func (s *Store) FinishBlobDeletions(ctx context.Context, ds []digest.Digest, before time.Time, del func(key string) error, workers int) (deleted int, err error) {
	all := sortedUnique(ds)
	if len(all) == 0 {
		return 0, nil
	}
	workers = max(workers, 1)
	b := before.UnixNano()
	var delErrs []error
	err = s.tx(ctx, func(tx *sql.Tx) error {
		deleted, delErrs = 0, nil
		rows, err := tx.QueryContext(ctx, s.q(`SELECT digest, touched_at, deleting_key FROM gc_blob_reviews
			WHERE digest IN (`+inList(len(all))+`) AND deleting_key IS NOT NULL ORDER BY digest`+s.skipLocked()), anys(all)...)
		if err != nil {
			return err
		}
		queued := map[string]string{}
		var locked []string
		for rows.Next() {
			var d, key string
			var touched int64
			if err := rows.Scan(&d, &touched, &key); err != nil {
				rows.Close()
				return err
			}
			if touched < b {
				queued[d] = key
				locked = append(locked, d)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(locked) == 0 {
			return err
		}
		rows, err = tx.QueryContext(ctx, s.q(`SELECT digest, storage_key FROM blobs WHERE digest IN (`+inList(len(locked))+`)`), anys(locked)...)
		if err != nil {
			return err
		}
		live := map[string]string{}
		for rows.Next() {
			var d, key string
			if err := rows.Scan(&d, &key); err != nil {
				rows.Close()
				return err
			}
			live[d] = key
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Delete the objects no blob row points at, a few at a time.
		var toDelete []string
		for _, d := range locked {
			if k, ok := live[d]; !ok || k != queued[d] {
				toDelete = append(toDelete, d)
			}
		}
		failed := make([]error, len(toDelete))
		var wg sync.WaitGroup
		sem := make(chan struct{}, workers)
		for i, d := range toDelete {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := del(queued[d]); err != nil {
					failed[i] = fmt.Errorf("%s (%s): %w", d, queued[d], err)
				}
			}()
		}
		wg.Wait()
		var gone, relived []string
		for i, d := range toDelete {
			if failed[i] != nil {
				delErrs = append(delErrs, failed[i])
				continue
			}
			deleted++
			if _, ok := live[d]; ok {
				relived = append(relived, d)
			} else {
				gone = append(gone, d)
			}
		}
		for _, d := range locked {
			if k, ok := live[d]; ok && k == queued[d] {
				relived = append(relived, d)
			}
		}
		if len(relived) > 0 {
			// d lives again; keep its review row (the touch) for later passes.
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE gc_blob_reviews SET deleting_key = NULL WHERE digest IN (`+inList(len(relived))+`)`), anys(relived)...); err != nil {
				return err
			}
		}
		if len(gone) > 0 {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM gc_blob_reviews WHERE digest IN (`+inList(len(gone))+`)`), anys(gone)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, errors.Join(delErrs...)
}

// ForgetReviews drops review rows whose touch is older than before and
// that queue no deletion: they no longer protect anything.
func (s *Store) ForgetReviews(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, s.q(`DELETE FROM gc_blob_reviews WHERE deleting_key IS NULL AND touched_at < ?`), before.UnixNano())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ManifestRef names a manifest in a repository.
type ManifestRef struct {
	Repo   string
	Digest digest.Digest
}

// unkeptWhere selects manifests m that no tag, no index of their
// repository and no live subject keep (a referrer of a live image stays).
const unkeptWhere = `NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.manifest_digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_children c WHERE c.repo = m.repo AND c.child_digest = m.digest)
		AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))`

// untaggedWhere selects the manifests of unkeptWhere created before ?.
const untaggedWhere = `m.created_at < ?
		AND ` + unkeptWhere

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

// UntaggedCandidatesAfter lists up to limit manifest queue entries due for
// review (created before before), after the entry after (the zero
// QueuedManifest starts from the beginning), in (ReviewFrom, Repo, Digest)
// order. A pass hands each to CollectManifest, which removes it.
func (s *Store) UntaggedCandidatesAfter(ctx context.Context, before time.Time, after QueuedManifest, limit int) ([]QueuedManifest, error) {
	b := before.UnixNano()
	query := `SELECT q.repo, q.digest, q.review_from,
		CASE WHEN EXISTS (SELECT 1 FROM manifests m WHERE m.repo = q.repo AND m.digest = q.digest AND ` + untaggedWhere + `) THEN 1 ELSE 0 END
		FROM gc_manifest_queue q WHERE q.review_from < ?`
	args := []any{b, b}
	if after.Repo != "" || after.Digest != "" {
		query += ` AND (q.review_from, q.repo, q.digest) > (?, ?, ?)`
		args = append(args, after.ReviewFrom, after.Repo, string(after.Digest))
	}
	rows, err := s.read.QueryContext(ctx, s.q(query+` ORDER BY q.review_from, q.repo, q.digest LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueuedManifest
	for rows.Next() {
		var e QueuedManifest
		var d string
		var garbage int
		if err := rows.Scan(&e.Repo, &d, &e.ReviewFrom, &garbage); err != nil {
			return nil, err
		}
		e.Digest, e.Garbage = digest.Digest(d), garbage != 0
		out = append(out, e)
	}
	return out, rows.Err()
}

// SettleManifests drops the manifest queue entries of refs that need no
// review (gc.untagged: keep never deletes, and delete has nothing to do
// for them): the manifest is gone, tagged, or kept by an index or a live
// subject. Entries of untagged, unkept manifests stay. It is one
// transaction for the batch: where the engine has row locks it first locks
// the entries, skipping those a writer holds (that writer is queueing the
// manifest again), and then deletes with one statement, which reads the
// manifests after the locks are taken: a change committed before that is
// seen, and a writer that queues the manifest after waits for the commit
// and queues it anew. It reports how many entries went.
func (s *Store) SettleManifests(ctx context.Context, refs []ManifestRef) (dropped int, err error) {
	keys := slices.Clone(refs)
	slices.SortFunc(keys, compareRefs)
	keys = slices.Compact(keys)
	if len(keys) == 0 {
		return 0, nil
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		dropped = 0
		locked := keys
		if s.dialect.RowLocks {
			rows, err := tx.QueryContext(ctx, s.q(`SELECT repo, digest FROM gc_manifest_queue WHERE `+refList(len(keys))+
				` ORDER BY repo, digest`+s.skipLocked()), refArgs(keys)...)
			if err != nil {
				return err
			}
			locked = nil
			for rows.Next() {
				var r ManifestRef
				var d string
				if err := rows.Scan(&r.Repo, &d); err != nil {
					rows.Close()
					return err
				}
				r.Digest = digest.Digest(d)
				locked = append(locked, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil || len(locked) == 0 {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM gc_manifest_queue WHERE (`+refList(len(locked))+`)
			AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = gc_manifest_queue.repo AND m.digest = gc_manifest_queue.digest
				AND `+unkeptWhere+`)`), refArgs(locked)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		dropped = int(n)
		return err
	})
	return dropped, err
}

func compareRefs(a, b ManifestRef) int {
	if c := strings.Compare(a.Repo, b.Repo); c != 0 {
		return c
	}
	return strings.Compare(string(a.Digest), string(b.Digest))
}

// refList is "(repo = ? AND digest = ?) OR ..." for n refs (refArgs).
func refList(n int) string {
	return strings.TrimSuffix(strings.Repeat("(repo = ? AND digest = ?) OR ", n), " OR ")
}

func refArgs(refs []ManifestRef) []any {
	out := make([]any, 0, 2*len(refs))
	for _, r := range refs {
		out = append(out, r.Repo, string(r.Digest))
	}
	return out
}

// Rescanned counts what a rescan queued (counting only: would queue).
type Rescanned struct {
	Blobs, Manifests int64
}

// Rescan queues for review every blob no manifest references and every
// manifest no tag, index or live subject keeps, that is not queued
// already; with countOnly it changes nothing and counts them. It is the
// queues' safety net: for the garbage that existed before the queues
// (migration 0003 creates them empty), for what replicas older than the
// queues write during a rolling upgrade, and for anything a change failed
// to queue. Manifests kept by an index or a subject are left out: deleting
// that index or subject queues them.
//
// It pages through blobs, then manifests, in key (digest) order, page
// rows at a time, each page one short INSERT … SELECT … ON CONFLICT DO
// NOTHING statement of its own (no long transaction, no lock held between
// pages), so it is safe to run at any time, while the registry serves, and
// as often as wanted: a second run queues nothing new. An entry's review
// time is the blob's or manifest's creation, so what is old enough is
// reviewed by the next pass.
func (s *Store) Rescan(ctx context.Context, page int, countOnly bool) (Rescanned, error) {
	var out Rescanned
	if page <= 0 {
		page = 1000
	}
	// Blobs, in digest pages.
	const blobWhere = `NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest)`
	after := ""
	for {
		var last string
		err := s.read.QueryRowContext(ctx, s.q(`SELECT digest FROM blobs WHERE digest > ? ORDER BY digest LIMIT 1 OFFSET ?`), after, page-1).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return out, err
		}
		bounded := err == nil // else the last page: no upper bound
		rng, args := `b.digest > ?`, []any{after}
		if bounded {
			rng, args = `b.digest > ? AND b.digest <= ?`, []any{after, last}
		}
		var n int64
		if countOnly {
			err = s.read.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM blobs b WHERE `+rng+` AND `+blobWhere+`
				AND NOT EXISTS (SELECT 1 FROM gc_blob_queue q WHERE q.digest = b.digest)`), args...).Scan(&n)
		} else {
			var res sql.Result
			res, err = s.write.ExecContext(ctx, s.q(`INSERT INTO gc_blob_queue (digest, review_from)
				SELECT b.digest, b.created_at FROM blobs b WHERE `+rng+` AND `+blobWhere+`
				ORDER BY b.digest ON CONFLICT (digest) DO NOTHING`), args...)
			if err == nil {
				n, err = res.RowsAffected()
			}
		}
		if err != nil {
			return out, err
		}
		out.Blobs += n
		if !bounded {
			break
		}
		after = last
	}
	// Manifests, in (repo, digest) pages.
	var from ManifestRef
	for {
		var last ManifestRef
		var d string
		err := s.read.QueryRowContext(ctx, s.q(`SELECT repo, digest FROM manifests WHERE (repo, digest) > (?, ?) ORDER BY repo, digest LIMIT 1 OFFSET ?`),
			from.Repo, string(from.Digest), page-1).Scan(&last.Repo, &d)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return out, err
		}
		last.Digest = digest.Digest(d)
		bounded := err == nil
		rng, args := `(m.repo, m.digest) > (?, ?)`, []any{from.Repo, string(from.Digest)}
		if bounded {
			rng += ` AND (m.repo, m.digest) <= (?, ?)`
			args = append(args, last.Repo, string(last.Digest))
		}
		var n int64
		if countOnly {
			err = s.read.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM manifests m WHERE `+rng+` AND `+unkeptWhere+`
				AND NOT EXISTS (SELECT 1 FROM gc_manifest_queue q WHERE q.repo = m.repo AND q.digest = m.digest)`), args...).Scan(&n)
		} else {
			var res sql.Result
			res, err = s.write.ExecContext(ctx, s.q(`INSERT INTO gc_manifest_queue (repo, digest, review_from)
				SELECT m.repo, m.digest, m.created_at FROM manifests m WHERE `+rng+` AND `+unkeptWhere+`
				ORDER BY m.repo, m.digest ON CONFLICT (repo, digest) DO NOTHING`), args...)
			if err == nil {
				n, err = res.RowsAffected()
			}
		}
		if err != nil {
			return out, err
		}
		out.Manifests += n
		if !bounded {
			break
		}
		from = last
	}
	return out, nil
}

// BlobsFreedBy lists the blobs a deletion of the manifests refs would
// leave unreferenced and that are old and untouched enough to be collected
// with them (what a dry run adds to the blobs no manifest references).
func (s *Store) BlobsFreedBy(ctx context.Context, refs []ManifestRef, before time.Time) ([]digest.Digest, error) {
	type key struct{ repo, digest string }
	going := make(map[key]bool, len(refs))
	for _, r := range refs {
		going[key{r.Repo, string(r.Digest)}] = true
	}
	const chunk = 200
	seen := map[string]bool{}
	var blobs []string
	for i := 0; i < len(refs); i += chunk {
		part := refs[i:min(i+chunk, len(refs))]
		var args []any
		for _, r := range part {
			args = append(args, r.Repo, string(r.Digest))
		}
		rows, err := s.read.QueryContext(ctx, s.q(`SELECT DISTINCT blob_digest FROM manifest_blobs WHERE `+
			strings.TrimSuffix(strings.Repeat("(repo = ? AND manifest_digest = ?) OR ", len(part)), " OR ")), args...)
		if err != nil {
			return nil, err
		}
		ds, err := scanStrings(rows)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if !seen[d] {
				seen[d] = true
				blobs = append(blobs, d)
			}
		}
	}
	slices.Sort(blobs)
	var out []digest.Digest
	b := before.UnixNano()
	for i := 0; i < len(blobs); i += chunk {
		part := blobs[i:min(i+chunk, len(blobs))]
		rows, err := s.read.QueryContext(ctx, s.q(`SELECT blob_digest, repo, manifest_digest FROM manifest_blobs WHERE blob_digest IN (`+inList(len(part))+`)`), anys(part)...)
		if err != nil {
			return nil, err
		}
		kept := map[string]bool{}
		for rows.Next() {
			var d string
			var k key
			if err := rows.Scan(&d, &k.repo, &k.digest); err != nil {
				rows.Close()
				return nil, err
			}
			if !going[k] {
				kept[d] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		rows, err = s.read.QueryContext(ctx, s.q(`SELECT b.digest FROM blobs b WHERE b.digest IN (`+inList(len(part))+`) AND b.created_at < ?
			AND NOT EXISTS (SELECT 1 FROM gc_blob_reviews r WHERE r.digest = b.digest AND r.touched_at >= ?) ORDER BY b.digest`), anys(part, b, b)...)
		if err != nil {
			return nil, err
		}
		old, err := scanStrings(rows)
		if err != nil {
			return nil, err
		}
		for _, d := range old {
			if !kept[d] {
				out = append(out, digest.Digest(d))
			}
		}
	}
	return out, nil
}

// CollectManifest deletes an untagged manifest if, under lock, it still
// qualifies, queueing what that may free (queueFreedBy). It reports
// whether it did. It settles ref's queue entry when no writer holds it:
// the entry goes unless the manifest is untagged and unkept but younger
// than before (then a later pass looks again); a manifest tagged, or kept
// by an index or a subject, is queued again when that changes.
func (s *Store) CollectManifest(ctx context.Context, ref ManifestRef, before time.Time) (collected bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		collected = false
		exists, err := s.exists(ctx, tx, `SELECT 1 FROM manifests WHERE repo = ? AND digest = ?`+s.forUpdate(), ref.Repo, string(ref.Digest))
		if err != nil {
			return err
		}
		// The entry after the manifest row (the order writers lock them in).
		queued, err := s.exists(ctx, tx, `SELECT 1 FROM gc_manifest_queue WHERE repo = ? AND digest = ?`+s.skipLocked(), ref.Repo, string(ref.Digest))
		if err != nil {
			return err
		}
		keep := false
		if exists {
			ok, err := s.exists(ctx, tx, `SELECT 1 FROM manifests m WHERE m.repo = ? AND m.digest = ? AND `+untaggedWhere, ref.Repo, string(ref.Digest), before.UnixNano())
			if err != nil {
				return err
			}
			if ok {
				if err := s.queueFreedBy(ctx, tx, ref.Repo, string(ref.Digest)); err != nil {
					return err
				}
				for _, q := range []string{
					`DELETE FROM manifests WHERE repo = ? AND digest = ?`,
					`DELETE FROM manifest_blobs WHERE repo = ? AND manifest_digest = ?`,
					`DELETE FROM manifest_children WHERE repo = ? AND parent_digest = ?`,
				} {
					if _, err := tx.ExecContext(ctx, s.q(q), ref.Repo, string(ref.Digest)); err != nil {
						return err
					}
				}
				collected = true
				if err := s.changed(ctx, tx, ref.Repo); err != nil {
					return err
				}
			} else {
				// Untagged and unkept, only too young?
				keep, err = s.exists(ctx, tx, `SELECT 1 FROM manifests m WHERE m.repo = ? AND m.digest = ? AND `+untaggedWhere, ref.Repo, string(ref.Digest), int64(math.MaxInt64))
				if err != nil {
					return err
				}
			}
		}
		if queued && !keep {
			_, err = tx.ExecContext(ctx, s.q(`DELETE FROM gc_manifest_queue WHERE repo = ? AND digest = ?`), ref.Repo, string(ref.Digest))
		}
		return err
	})
	return collected, err
}

// AcquireLease takes or renews the named lease for holder until now+ttl;
// it reports false when another holder's lease has not expired.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	t := time.Now()
	res, err := s.write.ExecContext(ctx, s.q(`INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at < ?`), name, holder, t.Add(ttl).UnixNano(), t.UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.write.ExecContext(ctx, s.q(`DELETE FROM leases WHERE name = ? AND holder = ?`), name, holder)
	return err
}

package sqlstore

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"

	"github.com/wharf-registry/wharf/registry"
)

// TouchBlob implements registry.BlobToucher. It leaves the review queue
// alone: the CommitUpload or LinkBlob that follows a touch queues the blob
// with a later review time, and a review re-checks the touch anyway.
func (s *Store) TouchBlob(ctx context.Context, d digest.Digest) (err error) {
	defer s.down(&err)
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_reviews (digest, touched_at) VALUES (?, ?)
			ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at`), string(d), now())
		return err
	})
}

// blobGarbage is 1 when the queued blob q looks collectable at cut-off ?.
const blobGarbage = `CASE WHEN EXISTS (SELECT 1 FROM blobs b WHERE b.digest = q.digest AND b.created_at < ?)
		AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = q.digest)
		AND NOT EXISTS (SELECT 1 FROM gc_blob_reviews r WHERE r.digest = q.digest AND r.touched_at >= ?) THEN 1 ELSE 0 END`

// BlobCandidatesAfter lists up to limit blob queue entries due for review
// (review delay counting from before them), after the entry after (the
// zero gc.QueuedBlob starts from the beginning), in (ReviewFrom, Digest)
// order. It reads the queue's index only, so its cost follows what
// changed, not how many blobs there are. A pass pages through with it and
// hands every entry to CollectBlobs, which removes it or moves it later,
// so each is visited once.
func (s *Store) BlobCandidatesAfter(ctx context.Context, before time.Time, after gc.QueuedBlob, limit int) ([]gc.QueuedBlob, error) {
	b := before.UnixNano()
	query := `SELECT q.digest, q.review_from, ` + blobGarbage + ` FROM gc_blob_queue q WHERE q.review_from < ?`
	args := []any{b, b, b}
	if after.Digest != "" {
		query += ` AND (q.review_from, q.digest) > (?, ?)`
		args = append(args, after.ReviewFrom, string(after.Digest))
	}
	return queryAll(ctx, s, s.read, query+` ORDER BY q.review_from, q.digest LIMIT ?`, append(args, limit), func(rows *sql.Rows) (e gc.QueuedBlob, err error) {
		var d string
		var garbage int
		err = rows.Scan(&d, &e.ReviewFrom, &garbage)
		e.Digest, e.Garbage = digest.Digest(d), garbage != 0
		return e, err
	})
}

// CollectBlobs removes from the database the blobs of ds that are still
// unreferenced and untouched since before, in one transaction with a fixed
// number of statements: it locks the queue entries, the review rows and
// then the blob rows of ds (skipping rows other transactions hold),
// re-checks after taking the locks that each blob is still unreferenced,
// untouched and created before before, deletes those blobs' rows and links
// and queues their storage keys for deletion (FinishBlobDeletions), and
// commits. It returns the blobs removed.
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
		queued, err := queryMap[int64](ctx, s, tx, `SELECT digest, review_from FROM gc_blob_queue
			WHERE digest IN (`+inList(len(all))+`) ORDER BY digest`+s.skipLocked(), anys(all))
		if err != nil {
			return err
		}
		later := map[string]int64{} // queued, not due yet: review from then
		reviews, err := s.lockReviews(ctx, tx, all, "")
		if err != nil {
			return err
		}
		pending := map[string]sql.NullString{}
		var untouched []string
		for _, r := range reviews {
			if r.touched < b {
				pending[r.digest] = r.deletingKey
				untouched = append(untouched, r.digest)
			} else {
				later[r.digest] = r.touched
			}
		}
		cands := map[string]registry.BlobInfo{}
		var keys []string
		locked := map[string]bool{}
		if len(untouched) > 0 {
			rows, err := tx.QueryContext(ctx, s.q(`SELECT digest, size, storage_key, created_at FROM blobs
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
			held, err := s.queryStrings(ctx, tx, `SELECT digest FROM blobs WHERE digest IN (`+inList(len(unlocked))+`)`, anys(unlocked)...)
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
			refs, err := s.queryStrings(ctx, tx, `SELECT DISTINCT blob_digest FROM manifest_blobs WHERE blob_digest IN (`+inList(len(keys))+`)`, anys(keys)...)
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

// review is a row of gc_blob_reviews.
type review struct {
	digest      string
	touched     int64
	deletingKey sql.NullString
}

// lockReviews reads the review rows of digests in digest order, locking
// them where the dialect can (skipping rows another pass holds); cond
// narrows the rows (" AND ...").
func (s *Store) lockReviews(ctx context.Context, tx *sql.Tx, digests []string, cond string) ([]review, error) {
	return queryAll(ctx, s, tx, `SELECT digest, touched_at, deleting_key FROM gc_blob_reviews
		WHERE digest IN (`+inList(len(digests))+`)`+cond+` ORDER BY digest`+s.skipLocked(), anys(digests),
		func(rows *sql.Rows) (review, error) {
			var r review
			err := rows.Scan(&r.digest, &r.touched, &r.deletingKey)
			return r, err
		})
}

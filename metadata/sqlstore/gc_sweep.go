package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
)

// PendingBlobDeletionsAfter lists up to limit queued storage deletions of
// digests after after ("" from the start), in digest order.
func (s *Store) PendingBlobDeletionsAfter(ctx context.Context, after digest.Digest, limit int) ([]gc.PendingDeletion, error) {
	return queryAll(ctx, s, s.read, `SELECT digest, deleting_key FROM gc_blob_reviews WHERE deleting_key IS NOT NULL AND digest > ? ORDER BY digest LIMIT ?`,
		[]any{string(after), limit}, func(rows *sql.Rows) (p gc.PendingDeletion, err error) {
			var d string
			err = rows.Scan(&d, &p.Key)
			p.Digest = digest.Digest(d)
			return p, err
		})
}

// FinishBlobDeletions deletes the queued storage objects of ds with del,
// in one transaction holding the locks TouchBlob waits for: it locks the
// queued review rows of ds (skipping rows an upload holds), runs del for
// the objects to delete with up to workers calls at a time, and then drops
// the entries whose object is gone or live again. It leaves an object
// alone (and its entry, to look again later) while an upload or mount
// touched since before may be writing it, and drops the entry without
// deleting when a blob row has come to point at the same object again.
// An entry whose del failed stays queued; the failures are returned
// joined, after the commit. It reports how many objects del deleted.
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
		reviews, err := s.lockReviews(ctx, tx, all, " AND deleting_key IS NOT NULL")
		if err != nil {
			return err
		}
		queued := map[string]string{}
		var locked []string
		for _, r := range reviews {
			if r.touched < b {
				queued[r.digest] = r.deletingKey.String
				locked = append(locked, r.digest)
			}
		}
		if len(locked) == 0 {
			return nil
		}
		live, err := queryMap[string](ctx, s, tx, `SELECT digest, storage_key FROM blobs WHERE digest IN (`+inList(len(locked))+`)`, anys(locked))
		if err != nil {
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

package sqlstore

import (
	"context"
	"database/sql"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
)

// unkeptWhere selects manifests m that no tag, no index of their
// repository and no live subject keep (a referrer of a live image stays).
const unkeptWhere = `NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.manifest_digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_children c WHERE c.repo = m.repo AND c.child_digest = m.digest)
		AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))`

// untaggedWhere selects the manifests of unkeptWhere created before ?.
const untaggedWhere = `m.created_at < ?
		AND ` + unkeptWhere

// UntaggedCandidatesAfter lists up to limit manifest queue entries due for
// review (created before before), after the entry after (the zero
// gc.QueuedManifest starts from the beginning), in (ReviewFrom, Repo, Digest)
// order. A pass hands each to CollectManifest, which removes it.
func (s *Store) UntaggedCandidatesAfter(ctx context.Context, before time.Time, after gc.QueuedManifest, limit int) ([]gc.QueuedManifest, error) {
	b := before.UnixNano()
	query := `SELECT q.repo, q.digest, q.review_from,
		CASE WHEN EXISTS (SELECT 1 FROM manifests m WHERE m.repo = q.repo AND m.digest = q.digest AND ` + untaggedWhere + `) THEN 1 ELSE 0 END
		FROM gc_manifest_queue q WHERE q.review_from < ?`
	args := []any{b, b}
	if after.Repo != "" || after.Digest != "" {
		query += ` AND (q.review_from, q.repo, q.digest) > (?, ?, ?)`
		args = append(args, after.ReviewFrom, after.Repo, string(after.Digest))
	}
	return queryAll(ctx, s, s.read, query+` ORDER BY q.review_from, q.repo, q.digest LIMIT ?`, append(args, limit), func(rows *sql.Rows) (e gc.QueuedManifest, err error) {
		var d string
		var garbage int
		err = rows.Scan(&e.Repo, &d, &e.ReviewFrom, &garbage)
		e.Digest, e.Garbage = digest.Digest(d), garbage != 0
		return e, err
	})
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
func (s *Store) SettleManifests(ctx context.Context, refs []gc.ManifestRef) (dropped int, err error) {
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
				var r gc.ManifestRef
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

func compareRefs(a, b gc.ManifestRef) int {
	if c := strings.Compare(a.Repo, b.Repo); c != 0 {
		return c
	}
	return strings.Compare(string(a.Digest), string(b.Digest))
}

// refList is "(repo = ? AND digest = ?) OR ..." for n refs (refArgs).
func refList(n int) string {
	return strings.TrimSuffix(strings.Repeat("(repo = ? AND digest = ?) OR ", n), " OR ")
}

func refArgs(refs []gc.ManifestRef) []any {
	out := make([]any, 0, 2*len(refs))
	for _, r := range refs {
		out = append(out, r.Repo, string(r.Digest))
	}
	return out
}

// BlobsFreedBy lists the blobs a deletion of the manifests refs would
// leave unreferenced and that are old and untouched enough to be collected
// with them (what a dry run adds to the blobs no manifest references).
func (s *Store) BlobsFreedBy(ctx context.Context, refs []gc.ManifestRef, before time.Time) ([]digest.Digest, error) {
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
		ds, err := s.queryStrings(ctx, s.read, `SELECT DISTINCT blob_digest FROM manifest_blobs WHERE `+
			strings.TrimSuffix(strings.Repeat("(repo = ? AND manifest_digest = ?) OR ", len(part)), " OR "), args...)
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
		old, err := s.queryStrings(ctx, s.read, `SELECT b.digest FROM blobs b WHERE b.digest IN (`+inList(len(part))+`) AND b.created_at < ?
			AND NOT EXISTS (SELECT 1 FROM gc_blob_reviews r WHERE r.digest = b.digest AND r.touched_at >= ?) ORDER BY b.digest`, anys(part, b, b)...)
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
func (s *Store) CollectManifest(ctx context.Context, ref gc.ManifestRef, before time.Time) (collected bool, err error) {
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

package sqlstore

import (
	"context"
	"database/sql"
	"errors"
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

var _ registry.BlobToucher = (*Store)(nil)

// TouchBlob implements registry.BlobToucher.
func (s *Store) TouchBlob(ctx context.Context, d digest.Digest) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_reviews (digest, touched_at) VALUES (?, ?)
			ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at`), string(d), now())
		return err
	})
}

// BlobCandidates lists up to limit blobs that no manifest references and
// that were neither created nor touched (uploaded, mounted) since before.
func (s *Store) BlobCandidates(ctx context.Context, before time.Time, limit int) ([]digest.Digest, error) {
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

// CollectBlob removes blob d from the database if, under lock, it is still
// unreferenced and untouched since before: its repository links and its
// row go, and its storage key is queued for deletion (FinishBlobDeletion),
// all in one committed transaction. It reports the blob removed, if any.
func (s *Store) CollectBlob(ctx context.Context, d digest.Digest, before time.Time) (info registry.BlobInfo, collected bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		collected = false
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO gc_blob_reviews (digest, touched_at) VALUES (?, 0) ON CONFLICT (digest) DO NOTHING`), string(d)); err != nil {
			return err
		}
		var touched int64
		var pending sql.NullString
		err := tx.QueryRowContext(ctx, s.q(`SELECT touched_at, deleting_key FROM gc_blob_reviews WHERE digest = ?`+s.forUpdate()), string(d)).Scan(&touched, &pending)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && touched >= before.UnixNano()) {
			return nil
		}
		if err != nil {
			return err
		}
		var created int64
		info = registry.BlobInfo{Digest: d}
		err = tx.QueryRowContext(ctx, s.q(`SELECT size, storage_key, created_at FROM blobs WHERE digest = ?`+s.forUpdate()), string(d)).Scan(&info.Size, &info.Key, &created)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && created >= before.UnixNano()) {
			return nil
		}
		if err != nil {
			return err
		}
		referenced, err := s.exists(ctx, tx, `SELECT 1 FROM manifest_blobs WHERE blob_digest = ? LIMIT 1`, string(d))
		if err != nil || referenced {
			return err
		}
		if pending.Valid && pending.String != info.Key {
			// An older object of this digest is still queued for deletion:
			// a later pass collects this one once that is done.
			return nil
		}
		for _, q := range []string{
			`DELETE FROM repository_blobs WHERE digest = ?`,
			`DELETE FROM blobs WHERE digest = ?`,
		} {
			if _, err := tx.ExecContext(ctx, s.q(q), string(d)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE gc_blob_reviews SET deleting_key = ? WHERE digest = ?`), info.Key, string(d)); err != nil {
			return err
		}
		collected = true
		return nil
	})
	return info, collected, err
}

// PendingDeletion is a storage object the database no longer references.
type PendingDeletion struct {
	Digest digest.Digest
	Key    string
}

// PendingBlobDeletions lists up to limit queued storage deletions.
func (s *Store) PendingBlobDeletions(ctx context.Context, limit int) ([]PendingDeletion, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT digest, deleting_key FROM gc_blob_reviews WHERE deleting_key IS NOT NULL ORDER BY digest LIMIT ?`), limit)
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
func (s *Store) FinishBlobDeletion(ctx context.Context, d digest.Digest, before time.Time, del func(key string) error) (deleted bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		deleted = false
		var touched int64
		var key sql.NullString
		err := tx.QueryRowContext(ctx, s.q(`SELECT touched_at, deleting_key FROM gc_blob_reviews WHERE digest = ?`+s.forUpdate()), string(d)).Scan(&touched, &key)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil || !key.Valid || touched >= before.UnixNano() {
			return err
		}
		var live string
		err = tx.QueryRowContext(ctx, s.q(`SELECT storage_key FROM blobs WHERE digest = ?`), string(d)).Scan(&live)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err != nil || live != key.String {
			if err := del(key.String); err != nil {
				return err
			}
			deleted = true
		}
		if err == nil {
			// d lives again; keep its review row (the touch) for later passes.
			_, err = tx.ExecContext(ctx, s.q(`UPDATE gc_blob_reviews SET deleting_key = NULL WHERE digest = ?`), string(d))
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`DELETE FROM gc_blob_reviews WHERE digest = ?`), string(d))
		return err
	})
	return deleted, err
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

// untaggedWhere selects manifests created before ? that no tag, no index
// of their repository and no live subject keep.
const untaggedWhere = `m.created_at < ?
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.manifest_digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_children c WHERE c.repo = m.repo AND c.child_digest = m.digest)
		AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))`

// UntaggedCandidates lists up to limit manifests that gc.untagged: delete
// would remove.
func (s *Store) UntaggedCandidates(ctx context.Context, before time.Time, limit int) ([]ManifestRef, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT m.repo, m.digest FROM manifests m WHERE `+untaggedWhere+` ORDER BY m.repo, m.digest LIMIT ?`), before.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ManifestRef
	for rows.Next() {
		var r ManifestRef
		var d string
		if err := rows.Scan(&r.Repo, &d); err != nil {
			return nil, err
		}
		r.Digest = digest.Digest(d)
		out = append(out, r)
	}
	return out, rows.Err()
}

// CollectManifest deletes an untagged manifest if, under lock, it still
// qualifies. It reports whether it did.
func (s *Store) CollectManifest(ctx context.Context, ref ManifestRef, before time.Time) (collected bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		collected = false
		if _, err := s.exists(ctx, tx, `SELECT 1 FROM manifests WHERE repo = ? AND digest = ?`+s.forUpdate(), ref.Repo, string(ref.Digest)); err != nil {
			return err
		}
		ok, err := s.exists(ctx, tx, `SELECT 1 FROM manifests m WHERE m.repo = ? AND m.digest = ? AND `+untaggedWhere, ref.Repo, string(ref.Digest), before.UnixNano())
		if err != nil || !ok {
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
		return s.changed(ctx, tx, ref.Repo)
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

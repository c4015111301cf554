package sqlstore

import (
	"context"
	"database/sql"

	"github.com/opencontainers/go-digest"
)

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

package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/gc"
)

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
func (s *Store) Rescan(ctx context.Context, page int, countOnly bool) (gc.Rescanned, error) {
	var out gc.Rescanned
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
		n, err := s.countOrQueue(ctx, countOnly, `SELECT COUNT(*) FROM blobs b WHERE `+rng+` AND `+blobWhere+`
				AND NOT EXISTS (SELECT 1 FROM gc_blob_queue q WHERE q.digest = b.digest)`,
			`INSERT INTO gc_blob_queue (digest, review_from)
				SELECT b.digest, b.created_at FROM blobs b WHERE `+rng+` AND `+blobWhere+`
				ORDER BY b.digest ON CONFLICT (digest) DO NOTHING`, args)
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
	var from gc.ManifestRef
	for {
		var last gc.ManifestRef
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
		n, err := s.countOrQueue(ctx, countOnly, `SELECT COUNT(*) FROM manifests m WHERE `+rng+` AND `+unkeptWhere+`
				AND NOT EXISTS (SELECT 1 FROM gc_manifest_queue q WHERE q.repo = m.repo AND q.digest = m.digest)`,
			`INSERT INTO gc_manifest_queue (repo, digest, review_from)
				SELECT m.repo, m.digest, m.created_at FROM manifests m WHERE `+rng+` AND `+unkeptWhere+`
				ORDER BY m.repo, m.digest ON CONFLICT (repo, digest) DO NOTHING`, args)
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

// countOrQueue runs one Rescan page: with countOnly the count query (on
// the read pool), else the insert, reporting the rows it queued.
func (s *Store) countOrQueue(ctx context.Context, countOnly bool, count, insert string, args []any) (int64, error) {
	if countOnly {
		var n int64
		err := s.read.QueryRowContext(ctx, s.q(count), args...).Scan(&n)
		return n, err
	}
	res, err := s.write.ExecContext(ctx, s.q(insert), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

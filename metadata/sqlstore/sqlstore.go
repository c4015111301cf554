// Package sqlstore implements registry.MetadataStore over database/sql. The
// SQL is the common subset of SQLite and PostgreSQL; each driver package
// (sqlite, postgres) opens the database, runs its migrations and hands the
// connections here with the few dialect facts that differ.
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Dialect holds what differs between SQL engines.
type Dialect struct {
	// Numbered placeholders ($1, $2, ...) instead of '?'.
	Numbered bool
	// RowLocks: the engine has SELECT ... FOR SHARE / FOR UPDATE (PostgreSQL
	// and compatibles). Without it (SQLite) write transactions are
	// serialized anyway, so the locking clauses are left out.
	RowLocks bool
	// Notify: every write transaction that changes what a repository serves
	// also runs pg_notify(NotifyChannel, repo), delivered on commit, so
	// other replicas can drop their caches for that repository.
	Notify bool
	// Retryable reports errors after which a whole transaction may be run
	// again (serialization failures, deadlocks); nil: none.
	Retryable func(error) bool
	// Unavailable reports errors that say the database cannot be reached
	// now (refused, reset, shutting down, timed out); the store wraps them
	// in registry.ErrUnavailable. nil: none.
	Unavailable func(error) bool
	// Echo, with Notify, lets a write wait after its commit until its own
	// notification came back through the change listener: by then the
	// other replicas have been sent it too, so a client's next request to
	// any replica finds the change (a delete is "atomic" across replicas,
	// as the spec asks). nil: no wait.
	Echo Echoer
}

// Echoer is the change listener's side of Dialect.Echo.
type Echoer interface {
	// Expect registers a notification token before the transaction that
	// sends it commits; wait blocks until it arrives (bounded), cancel
	// forgets it (the transaction rolled back).
	Expect(token string) (wait func(context.Context), cancel func())
}

// NotifyPayload is what a change notification carries: the repository
// and, after a newline (names cannot contain one), the sender's token.
func NotifyPayload(repo, token string) string { return repo + "\n" + token }

// ParseNotifyPayload splits a payload made by NotifyPayload.
func ParseNotifyPayload(p string) (repo, token string) {
	repo, token, _ = strings.Cut(p, "\n")
	return repo, token
}

// NotifyChannel is the LISTEN/NOTIFY channel that carries repository names
// whose manifests, tags or blob links changed.
const NotifyChannel = "wharf_repo"

// Store is a registry.MetadataStore over one or two *sql.DB. SQLite wants a
// single writer connection beside a pool of readers; PostgreSQL passes the
// same pool twice.
type Store struct {
	read, write *sql.DB
	dialect     Dialect
	queries     map[string]string
	echoes      sync.Map // *sql.Tx -> *echo, for Dialect.Echo
}

// echo is one write transaction's notification token.
type echo struct {
	token        string
	wait         func(context.Context)
	cancelExpect func()
}

// New returns a store. read and write may be the same *sql.DB.
func New(read, write *sql.DB, d Dialect) *Store {
	return &Store{read: read, write: write, dialect: d, queries: map[string]string{}}
}

var _ registry.MetadataStore = (*Store)(nil)

// q rewrites '?' placeholders for the dialect. Queries are constants, so
// the rewrite is done once per query text and remembered.
func (s *Store) q(query string) string {
	if !s.dialect.Numbered {
		return query
	}
	if r, ok := rebound.Load(query); ok {
		return r.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	rebound.Store(query, b.String())
	return b.String()
}

func now() int64 { return time.Now().UnixNano() }

// tx runs fn in a write transaction, again (a few times) when the engine
// says the transaction lost a race it may retry.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.tx1(ctx, fn)
		if err == nil || s.dialect.Retryable == nil || attempt >= 4 || !s.dialect.Retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
}

func (s *Store) tx1(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	err = fn(tx)
	if err == nil {
		err = tx.Commit()
	} else {
		_ = tx.Rollback()
	}
	if v, ok := s.echoes.LoadAndDelete(tx); ok {
		e := v.(*echo)
		if err != nil {
			e.cancelExpect()
		} else {
			e.wait(ctx)
		}
	}
	return err
}

// changed tells other replicas, on commit, that repo changed.
func (s *Store) changed(ctx context.Context, tx *sql.Tx, repo string) error {
	if !s.dialect.Notify {
		return nil
	}
	token := ""
	if s.dialect.Echo != nil {
		v, ok := s.echoes.Load(tx)
		if !ok {
			e := &echo{token: newToken()}
			e.wait, e.cancelExpect = s.dialect.Echo.Expect(e.token)
			s.echoes.Store(tx, e)
			v = e
		}
		token = v.(*echo).token
	}
	_, err := tx.ExecContext(ctx, s.q(`SELECT pg_notify('`+NotifyChannel+`', ?)`), NotifyPayload(repo, token))
	return err
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// forShare and forUpdate are the row-locking clauses where the engine has them.
func (s *Store) forShare() string {
	if s.dialect.RowLocks {
		return ` FOR SHARE`
	}
	return ``
}

func (s *Store) forUpdate() string {
	if s.dialect.RowLocks {
		return ` FOR UPDATE`
	}
	return ``
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return registry.ErrNotFound
	}
	return err
}

func (s *Store) ensureRepo(ctx context.Context, tx *sql.Tx, repo string) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`), repo, now())
	return err
}

// RepoBlob implements registry.MetadataStore.
func (s *Store) RepoBlob(ctx context.Context, repo string, d digest.Digest) (_ registry.BlobInfo, err error) {
	defer s.down(&err)
	info := registry.BlobInfo{Digest: d}
	err = s.read.QueryRowContext(ctx, s.q(`SELECT b.size, b.storage_key FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repo = ? AND rb.digest = ?`),
		repo, string(d)).Scan(&info.Size, &info.Key)
	return info, notFound(err)
}

// Blob implements registry.MetadataStore.
func (s *Store) Blob(ctx context.Context, d digest.Digest) (_ registry.BlobInfo, err error) {
	defer s.down(&err)
	info := registry.BlobInfo{Digest: d}
	err = s.read.QueryRowContext(ctx, s.q(`SELECT size, storage_key FROM blobs WHERE digest = ?
		AND EXISTS (SELECT 1 FROM repository_blobs WHERE digest = ?)`), string(d), string(d)).Scan(&info.Size, &info.Key)
	return info, notFound(err)
}

// ManifestBlobs implements registry.MetadataStore.
func (s *Store) ManifestBlobs(ctx context.Context, repo string, manifest digest.Digest) (_ []registry.BlobInfo, err error) {
	defer s.down(&err)
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT b.digest, b.size, b.storage_key FROM manifest_blobs mb
		JOIN repository_blobs rb ON rb.repo = mb.repo AND rb.digest = mb.blob_digest
		JOIN blobs b ON b.digest = mb.blob_digest
		WHERE mb.repo = ? AND mb.manifest_digest = ?`), repo, string(manifest))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []registry.BlobInfo
	for rows.Next() {
		var (
			b registry.BlobInfo
			d string
		)
		if err := rows.Scan(&d, &b.Size, &b.Key); err != nil {
			return nil, err
		}
		b.Digest = digest.Digest(d)
		out = append(out, b)
	}
	return out, rows.Err()
}

// ReposWithBlob implements registry.MetadataStore.
func (s *Store) ReposWithBlob(ctx context.Context, d digest.Digest, limit int) (_ []string, err error) {
	defer s.down(&err)
	return s.queryStrings(ctx, s.read, `SELECT repo FROM repository_blobs WHERE digest = ? ORDER BY repo LIMIT ?`, string(d), limit)
}

// CommitUpload implements registry.MetadataStore.
func (s *Store) CommitUpload(ctx context.Context, uploadID string, info registry.BlobInfo) (_ registry.BlobInfo, err error) {
	defer s.down(&err)
	var out registry.BlobInfo
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var repo string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT repo FROM uploads WHERE id = ?`), uploadID).Scan(&repo); err != nil {
			return notFound(err)
		}
		t := now()
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`),
			string(info.Digest), info.Size, info.Key, t); err != nil {
			return err
		}
		out = registry.BlobInfo{Digest: info.Digest}
		if err := tx.QueryRowContext(ctx, s.q(`SELECT size, storage_key FROM blobs WHERE digest = ?`), string(info.Digest)).Scan(&out.Size, &out.Key); err != nil {
			return err
		}
		if err := s.link(ctx, tx, repo, info.Digest); err != nil {
			return err
		}
		// No manifest references the blob yet: GC looks at it once the
		// review delay has passed (a manifest that comes meanwhile keeps it).
		if err := s.queueBlob(ctx, tx, info.Digest, t); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM uploads WHERE id = ?`), uploadID)
		return err
	})
	return out, err
}

func (s *Store) link(ctx context.Context, tx *sql.Tx, repo string, d digest.Digest) error {
	if err := s.ensureRepo(ctx, tx, repo); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO repository_blobs (repo, digest, created_at) VALUES (?, ?, ?) ON CONFLICT (repo, digest) DO NOTHING`),
		repo, string(d), now())
	return err
}

// LinkBlob implements registry.MetadataStore.
func (s *Store) LinkBlob(ctx context.Context, repo string, d digest.Digest) (err error) {
	defer s.down(&err)
	return s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		// FOR SHARE: garbage collection deletes a blob row under FOR
		// UPDATE, so a link and a collection of one blob never interleave.
		if err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM blobs WHERE digest = ?`+s.forShare()), string(d)).Scan(&one); err != nil {
			return notFound(err)
		}
		if err := s.link(ctx, tx, repo, d); err != nil {
			return err
		}
		// A mount is a use of the blob, like an upload: reviewed after the
		// delay, in case no manifest comes to reference it. A blob some
		// manifest references is left out (its queue row untouched and
		// unlocked): the deletion of its last manifest queues it.
		return s.queueUnreferencedBlob(ctx, tx, d, now())
	})
}

// UnlinkBlob implements registry.MetadataStore.
func (s *Store) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) (err error) {
	defer s.down(&err)
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.deleteFound(ctx, tx, `DELETE FROM repository_blobs WHERE repo = ? AND digest = ?`, repo, string(d)); err != nil {
			return err
		}
		return s.changed(ctx, tx, repo)
	})
}

// PutManifest implements registry.MetadataStore.
func (s *Store) PutManifest(ctx context.Context, repo string, m registry.NewManifest) (err error) {
	defer s.down(&err)
	return s.tx(ctx, func(tx *sql.Tx) error {
		var missing registry.MissingReferencesError
		for _, d := range m.Blobs {
			if m.Cached {
				break
			}
			// Lock the blob row first (see LinkBlob): once this manifest
			// commits, garbage collection sees its reference.
			if s.dialect.RowLocks {
				if _, err := s.exists(ctx, tx, `SELECT 1 FROM blobs WHERE digest = ?`+s.forShare(), string(d)); err != nil {
					return err
				}
			}
			ok, err := s.exists(ctx, tx, `SELECT 1 FROM repository_blobs WHERE repo = ? AND digest = ?`, repo, string(d))
			if err != nil {
				return err
			}
			if !ok {
				missing.Blobs = append(missing.Blobs, d)
			}
		}
		for _, d := range m.Children {
			if m.Cached {
				break
			}
			ok, err := s.exists(ctx, tx, `SELECT 1 FROM manifests WHERE repo = ? AND digest = ?`+s.forShare(), repo, string(d))
			if err != nil {
				return err
			}
			if !ok {
				missing.Manifests = append(missing.Manifests, d)
			}
		}
		if len(missing.Blobs)+len(missing.Manifests) > 0 {
			return &missing
		}
		if err := s.ensureRepo(ctx, tx, repo); err != nil {
			return err
		}
		r := m.Record
		var ann sql.NullString
		if len(r.Annotations) > 0 {
			b, err := json.Marshal(r.Annotations)
			if err != nil {
				return err
			}
			ann = sql.NullString{String: string(b), Valid: true}
		}
		subject := sql.NullString{String: string(r.Subject), Valid: r.Subject != ""}
		t := now()
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, annotations, payload, size, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo, digest) DO UPDATE SET created_at = manifests.created_at`),
			repo, string(r.Digest), r.MediaType, r.ArtifactType, subject, ann, r.Payload, int64(len(r.Payload)), t); err != nil {
			return err
		}
		for _, d := range m.Blobs {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO manifest_blobs (repo, manifest_digest, blob_digest) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
				repo, string(r.Digest), string(d)); err != nil {
				return err
			}
		}
		for _, d := range m.Children {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO manifest_children (repo, parent_digest, child_digest) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
				repo, string(r.Digest), string(d)); err != nil {
				return err
			}
		}
		if len(m.Tags) == 0 {
			// Pushed by digest: untagged unless a tag already points here.
			if err := s.queueManifest(ctx, tx, repo, string(r.Digest)); err != nil {
				return err
			}
		}
		for _, tag := range m.Tags {
			// A new tag row is inserted (and so locked) first; an existing
			// one is read under lock, so that of two moves of one tag each
			// sees the other's result and queues the manifest the tag
			// leaves, which may have lost its last tag.
			res, err := tx.ExecContext(ctx, s.q(`INSERT INTO tags (repo, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (repo, name) DO NOTHING`),
				repo, tag, string(r.Digest), t)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 1 {
				continue
			}
			var old string // "": deleted meanwhile
			err = tx.QueryRowContext(ctx, s.q(`SELECT manifest_digest FROM tags WHERE repo = ? AND name = ?`+s.forUpdate()), repo, tag).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if old != "" && old != string(r.Digest) {
				if err := s.queueManifest(ctx, tx, repo, old); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tags (repo, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (repo, name) DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at`),
				repo, tag, string(r.Digest), t); err != nil {
				return err
			}
		}
		return s.changed(ctx, tx, repo)
	})
}

// deleteFound runs a DELETE in tx, registry.ErrNotFound when it matched
// no row.
func (s *Store) deleteFound(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return registry.ErrNotFound
	}
	return nil
}

func (s *Store) exists(ctx context.Context, tx *sql.Tx, query string, args ...any) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, s.q(query), args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Manifest implements registry.MetadataStore.
func (s *Store) Manifest(ctx context.Context, repo string, ref oci.Reference) (_ registry.ManifestRecord, err error) {
	defer s.down(&err)
	var row *sql.Row
	const cols = `m.digest, m.media_type, m.artifact_type, m.subject, m.annotations, m.payload, m.created_at`
	if ref.IsDigest() {
		row = s.read.QueryRowContext(ctx, s.q(`SELECT `+cols+` FROM manifests m WHERE m.repo = ? AND m.digest = ?`), repo, string(ref.Digest))
	} else {
		row = s.read.QueryRowContext(ctx, s.q(`SELECT `+cols+` FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.manifest_digest WHERE t.repo = ? AND t.name = ?`), repo, ref.Tag)
	}
	var (
		r       registry.ManifestRecord
		d       string
		subject sql.NullString
		ann     sql.NullString
		created int64
	)
	if err := row.Scan(&d, &r.MediaType, &r.ArtifactType, &subject, &ann, &r.Payload, &created); err != nil {
		return r, notFound(err)
	}
	r.Digest, r.Subject, r.CreatedAt = digest.Digest(d), digest.Digest(subject.String), time.Unix(0, created)
	if ann.Valid {
		if err := json.Unmarshal([]byte(ann.String), &r.Annotations); err != nil {
			return r, fmt.Errorf("manifest %s annotations: %w", d, err)
		}
	}
	return r, nil
}

// DeleteManifest implements registry.MetadataStore.
func (s *Store) DeleteManifest(ctx context.Context, repo string, d digest.Digest) (err error) {
	defer s.down(&err)
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.deleteFound(ctx, tx, `DELETE FROM manifests WHERE repo = ? AND digest = ?`, repo, string(d)); err != nil {
			return err
		}
		if err := s.queueFreedBy(ctx, tx, repo, string(d)); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM tags WHERE repo = ? AND manifest_digest = ?`,
			`DELETE FROM manifest_blobs WHERE repo = ? AND manifest_digest = ?`,
			`DELETE FROM manifest_children WHERE repo = ? AND parent_digest = ?`,
		} {
			if _, err := tx.ExecContext(ctx, s.q(q), repo, string(d)); err != nil {
				return err
			}
		}
		return s.changed(ctx, tx, repo)
	})
}

// DeleteTag implements registry.MetadataStore.
func (s *Store) DeleteTag(ctx context.Context, repo, tag string) (err error) {
	defer s.down(&err)
	return s.tx(ctx, func(tx *sql.Tx) error {
		var old string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT manifest_digest FROM tags WHERE repo = ? AND name = ?`+s.forUpdate()), repo, tag).Scan(&old); err != nil {
			return notFound(err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM tags WHERE repo = ? AND name = ?`), repo, tag); err != nil {
			return err
		}
		// The manifest may have lost its last tag (gc.untagged: delete).
		if err := s.queueManifest(ctx, tx, repo, old); err != nil {
			return err
		}
		return s.changed(ctx, tx, repo)
	})
}

// Tags implements registry.MetadataStore.
func (s *Store) Tags(ctx context.Context, repo, last string, n int) (_ []string, err error) {
	defer s.down(&err)
	var one int
	if err := s.read.QueryRowContext(ctx, s.q(`SELECT 1 FROM repositories WHERE name = ?`), repo).Scan(&one); err != nil {
		return nil, notFound(err)
	}
	return s.queryStrings(ctx, s.read, `SELECT name FROM tags WHERE repo = ? AND name > ? ORDER BY name LIMIT ?`, repo, last, limit(n))
}

// Repositories implements registry.MetadataStore.
func (s *Store) Repositories(ctx context.Context, last string, n int) (_ []string, err error) {
	defer s.down(&err)
	return s.queryStrings(ctx, s.read, `SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?`, last, limit(n))
}

// limit maps "no limit" (n < 0) to a LIMIT both engines accept.
func limit(n int) int64 {
	if n < 0 {
		return 1 << 62
	}
	return int64(n)
}

// Referrers implements registry.MetadataStore.
func (s *Store) Referrers(ctx context.Context, repo string, d digest.Digest) (_ []oci.Descriptor, err error) {
	defer s.down(&err)
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT digest, media_type, artifact_type, size, annotations FROM manifests WHERE repo = ? AND subject = ? ORDER BY created_at, digest`), repo, string(d))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []oci.Descriptor{}
	for rows.Next() {
		var (
			desc oci.Descriptor
			dg   string
			ann  sql.NullString
		)
		if err := rows.Scan(&dg, &desc.MediaType, &desc.ArtifactType, &desc.Size, &ann); err != nil {
			return nil, err
		}
		desc.Digest = digest.Digest(dg)
		if ann.Valid {
			if err := json.Unmarshal([]byte(ann.String), &desc.Annotations); err != nil {
				return nil, fmt.Errorf("manifest %s annotations: %w", dg, err)
			}
		}
		out = append(out, desc)
	}
	return out, rows.Err()
}

// CreateUpload implements registry.MetadataStore.
func (s *Store) CreateUpload(ctx context.Context, u *registry.Upload) (err error) {
	defer s.down(&err)
	_, err = s.write.ExecContext(ctx, s.q(`INSERT INTO uploads (id, repo, byte_offset, hash_alg, hash_state, backend_state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		u.ID, u.Repo, u.Offset, string(u.HashAlg), u.HashState, u.Backend, u.CreatedAt.UnixNano(), u.UpdatedAt.UnixNano())
	return err
}

const uploadCols = `id, repo, byte_offset, hash_alg, hash_state, backend_state, created_at, updated_at`

func scanUpload(sc interface{ Scan(...any) error }) (*registry.Upload, error) {
	var (
		u                registry.Upload
		alg              string
		created, updated int64
	)
	if err := sc.Scan(&u.ID, &u.Repo, &u.Offset, &alg, &u.HashState, &u.Backend, &created, &updated); err != nil {
		return nil, err
	}
	u.HashAlg, u.CreatedAt, u.UpdatedAt = digest.Algorithm(alg), time.Unix(0, created), time.Unix(0, updated)
	return &u, nil
}

// Upload implements registry.MetadataStore.
func (s *Store) Upload(ctx context.Context, repo, id string) (_ *registry.Upload, err error) {
	defer s.down(&err)
	u, err := scanUpload(s.read.QueryRowContext(ctx, s.q(`SELECT `+uploadCols+` FROM uploads WHERE id = ? AND repo = ?`), id, repo))
	return u, notFound(err)
}

// UpdateUpload implements registry.MetadataStore.
func (s *Store) UpdateUpload(ctx context.Context, u *registry.Upload, prevOffset int64) (err error) {
	defer s.down(&err)
	res, err := s.write.ExecContext(ctx, s.q(`UPDATE uploads SET byte_offset = ?, hash_state = ?, backend_state = ?, updated_at = ? WHERE id = ? AND byte_offset = ?`),
		u.Offset, u.HashState, u.Backend, u.UpdatedAt.UnixNano(), u.ID, prevOffset)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return registry.ErrConflict
	}
	return nil
}

// DeleteUpload implements registry.MetadataStore.
func (s *Store) DeleteUpload(ctx context.Context, id string) (err error) {
	defer s.down(&err)
	res, err := s.write.ExecContext(ctx, s.q(`DELETE FROM uploads WHERE id = ?`), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return registry.ErrNotFound
	}
	return nil
}

// ExpiredUploads implements registry.MetadataStore.
func (s *Store) ExpiredUploads(ctx context.Context, before time.Time, n int) (_ []*registry.Upload, err error) {
	defer s.down(&err)
	return queryAll(ctx, s, s.read, `SELECT `+uploadCols+` FROM uploads WHERE updated_at < ? ORDER BY updated_at LIMIT ?`, []any{before.UnixNano(), limit(n)},
		func(rows *sql.Rows) (*registry.Upload, error) { return scanUpload(rows) })
}

// Ping implements registry.MetadataStore.
func (s *Store) Ping(ctx context.Context) (err error) {
	defer s.down(&err)
	return s.read.PingContext(ctx)
}

// down wraps *err in registry.ErrUnavailable when the dialect says the
// database could not be reached, so the server answers 503, not 500.
func (s *Store) down(err *error) {
	if *err != nil && s.dialect.Unavailable != nil && !errors.Is(*err, registry.ErrUnavailable) && s.dialect.Unavailable(*err) {
		*err = fmt.Errorf("%w: %w", registry.ErrUnavailable, *err)
	}
}

// Close implements registry.MetadataStore.
func (s *Store) Close() error {
	err := s.read.Close()
	if s.write != s.read {
		err = errors.Join(err, s.write.Close())
	}
	return err
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs query on db and returns row's reading of each row.
func queryAll[T any](ctx context.Context, s *Store, db querier, query string, args []any, row func(*sql.Rows) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := row(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// queryMap runs a query of two columns, a string key and its value, on
// db and returns them as a map (never nil).
func queryMap[V any](ctx context.Context, s *Store, db querier, query string, args []any) (map[string]V, error) {
	rows, err := db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]V{}
	for rows.Next() {
		var k string
		var v V
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// queryStrings runs a query of one string column on db and returns the
// values (never nil).
func (s *Store) queryStrings(ctx context.Context, db querier, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// rebound caches placeholder rewrites, shared by every Store.
var rebound sync.Map

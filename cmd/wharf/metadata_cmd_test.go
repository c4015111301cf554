package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/metadata/postgres"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/metadata/sqlstore"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// metaBackend is a metadata store the commands are tested on: dir is
// its data_dir, config a file configuring it, sqlDB opens it with
// database/sql, tables lists its tables.
type metaBackend struct {
	name       string
	dir        string
	config     string
	sqlDB      func(t *testing.T) *sql.DB
	dialect    sqlstore.Dialect
	migrations func() ([]sqlstore.Migration, error)
	tables     string
}

// metaBackends returns SQLite and a fresh PostgreSQL database on a
// cluster started for t, each with a data_dir of its own and a config
// file there (gc settings extra).
func metaBackends(t *testing.T, extra string) []metaBackend {
	t.Helper()
	open := func(driver, dsn string) func(t *testing.T) *sql.DB {
		return func(t *testing.T) *sql.DB {
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	}
	lite, pgDir := t.TempDir(), t.TempDir()
	dsn := newPGDatabase(t)
	return []metaBackend{
		{name: "sqlite", dir: lite, config: writeConfig(t, lite, "metadata:\n  driver: sqlite\n"+extra),
			sqlDB: open("sqlite", "file:"+filepath.Join(lite, "wharf.db")), migrations: sqlite.Migrations,
			tables: `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`},
		{name: "postgres", dir: pgDir, config: writeConfig(t, pgDir, fmt.Sprintf("metadata:\n  driver: postgres\n  postgres:\n    dsn: %q\n", dsn)+extra),
			sqlDB: open("pgx", dsn), dialect: sqlstore.Dialect{Numbered: true}, migrations: postgres.Migrations,
			tables: `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`},
	}
}

// newPGDatabase starts a PostgreSQL cluster for t (skipping without one,
// unless WHARFDEV_REQUIRE_SERVERS=1) and returns the DSN of a new database.
func newPGDatabase(t *testing.T) string {
	t.Helper()
	return pgtest.DSN(t)
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "wharf.yaml")
	body = fmt.Sprintf("data_dir: %q\nlog:\n  level: warn\n", dir) + body
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func listTables(t *testing.T, b metaBackend) []string {
	t.Helper()
	rows, err := b.sqlDB(t).Query(b.tables)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func appliedVersions(t *testing.T, b metaBackend) []int {
	t.Helper()
	rows, err := b.sqlDB(t).Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestMigrateCommand: wharf migrate --dry-run lists the pending migrations
// and writes nothing (not even the bookkeeping table); wharf migrate
// applies them, once.
func TestMigrateCommand(t *testing.T) {
	for _, b := range metaBackends(t, "") {
		t.Run(b.name, func(t *testing.T) {
			all, err := b.migrations()
			if err != nil || len(all) < 2 {
				t.Fatalf("migrations: %d, %v", len(all), err)
			}
			lines := func(prefix string, ms []sqlstore.Migration, last string) string {
				var sb strings.Builder
				for _, m := range ms {
					sb.WriteString(prefix + " " + m.Name + "\n")
				}
				return sb.String() + last + "\n"
			}
			// A database never migrated: everything is pending.
			out, err := runCmd(t, "", "migrate", "--dry-run", "-c", b.config)
			if want := lines("apply", all, fmt.Sprintf("%d pending (dry run: nothing applied)", len(all))); err != nil || out != want {
				t.Fatalf("dry run on a new database: %q, %v; want %q", out, err, want)
			}
			if b.name == "sqlite" {
				if _, err := os.Stat(filepath.Join(b.dir, "wharf.db")); !os.IsNotExist(err) {
					t.Fatalf("dry run created the database file: %v", err)
				}
			} else if tabs := listTables(t, b); len(tabs) != 0 {
				t.Fatalf("dry run created tables: %v", tabs)
			}

			// Part of the schema applied (an older release): the rest is pending.
			if _, err := sqlstore.Migrate(context.Background(), b.sqlDB(t), all[:1], b.dialect); err != nil {
				t.Fatal(err)
			}
			before := listTables(t, b)
			out, err = runCmd(t, "", "migrate", "--dry-run", "-c", b.config)
			if want := lines("apply", all[1:], fmt.Sprintf("%d pending (dry run: nothing applied)", len(all)-1)); err != nil || out != want {
				t.Fatalf("dry run: %q, %v; want %q", out, err, want)
			}
			if got := appliedVersions(t, b); !slices.Equal(got, []int{all[0].Version}) {
				t.Fatalf("dry run applied: versions %v", got)
			}
			if after := listTables(t, b); !slices.Equal(before, after) {
				t.Fatalf("dry run changed the tables: %v -> %v", before, after)
			}

			out, err = runCmd(t, "", "migrate", "-c", b.config)
			if want := lines("applying", all[1:], fmt.Sprintf("%d applied", len(all)-1)); err != nil || out != want {
				t.Fatalf("migrate: %q, %v; want %q", out, err, want)
			}
			var versions []int
			for _, m := range all {
				versions = append(versions, m.Version)
			}
			if got := appliedVersions(t, b); !slices.Equal(got, versions) {
				t.Fatalf("after migrate: versions %v, want %v", got, versions)
			}
			if tabs := listTables(t, b); !slices.Contains(tabs, "leases") {
				t.Fatalf("after migrate: tables %v lack leases (0002)", tabs)
			}
			for _, args := range [][]string{{"migrate"}, {"migrate", "--dry-run"}} {
				out, err = runCmd(t, "", append(args, "-c", b.config)...)
				if err != nil || out != "schema is up to date\n" {
					t.Fatalf("%v when up to date: %q, %v", args, out, err)
				}
			}
		})
	}
}

// TestGCCommand: wharf gc --dry-run lists the untagged manifest and the
// unreferenced blobs and deletes nothing; wharf gc deletes them from the
// database and from storage and leaves the tagged image whole.
func TestGCCommand(t *testing.T) {
	for _, b := range metaBackends(t, "gc:\n  review_delay: 1ms\n  untagged: delete\n  untagged_after: 1ms\n") {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			cfg, err := config.Load(b.config, nil)
			if err != nil {
				t.Fatal(err)
			}
			root := app.BlobRoot(cfg)
			// open opens the stores as the commands do, for a look from outside.
			open := func() (*registry.Registry, app.MetaStore) {
				blobs, _, err := app.OpenBlobStore(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				meta, _, err := app.OpenMetadata(ctx, cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				return registry.New(meta, blobs, registry.Options{}), meta
			}
			reg, meta := open()
			put := func(b string) digest.Digest {
				d := digest.FromString(b)
				if _, err := reg.PutBlob(ctx, "team/app", d, registry.Chunk{Body: strings.NewReader(b), Start: -1, Length: int64(len(b))}); err != nil {
					t.Fatal(err)
				}
				return d
			}
			image := func(ref oci.Reference, cfg, layer string) (digest.Digest, []digest.Digest) {
				c, l := put(cfg), put(layer)
				m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
					`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
					`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, c, len(cfg), l, len(layer))
				if ref.Tag == "" {
					ref.Digest = digest.FromString(m)
				}
				man, err := reg.PutManifest(ctx, "team/app", ref, oci.MediaTypeOCIManifest, []byte(m))
				if err != nil {
					t.Fatal(err)
				}
				return man.Digest, []digest.Digest{c, l}
			}
			kept, keptBlobs := image(oci.Reference{Tag: "v1"}, `{"kept":1}`, "kept layer")
			untagged, untaggedBlobs := image(oci.Reference{}, `{"untagged":1}`, "untagged layer")
			orphan := put("orphan: uploaded, never referenced")
			meta.Close()
			time.Sleep(20 * time.Millisecond) // past the 1ms review delay
			gone := append([]digest.Digest{orphan}, untaggedBlobs...)

			exists := func(d digest.Digest) bool {
				_, meta := open()
				defer meta.Close()
				_, err := meta.Blob(ctx, d)
				if err != nil && !errors.Is(err, registry.ErrNotFound) {
					t.Fatal(err)
				}
				_, serr := os.Stat(filepath.Join(root, filesystem.Key(d)))
				if (err == nil) != (serr == nil) {
					t.Fatalf("%s: in the database %v, in storage %v", d, err == nil, serr == nil)
				}
				return err == nil
			}
			manifestExists := func(d digest.Digest) bool {
				reg, meta := open()
				defer meta.Close()
				_, err := reg.Manifest(ctx, "team/app", oci.Reference{Digest: d})
				if err != nil && !errors.Is(err, oci.ErrManifestUnknown) {
					t.Fatal(err)
				}
				return err == nil
			}

			out, err := runCmd(t, "", "gc", "--dry-run", "-c", b.config)
			if err != nil {
				t.Fatalf("gc --dry-run: %v\n%s", err, out)
			}
			want := []string{"would delete manifest team/app@" + string(untagged), "would delete 1 manifests, 3 blobs"}
			for _, d := range gone {
				want = append(want, "would delete blob "+string(d))
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Fatalf("gc --dry-run output lacks %q:\n%s", w, out)
				}
			}
			for _, d := range append(keptBlobs, gone...) {
				if !exists(d) {
					t.Fatalf("dry run deleted blob %s", d)
				}
			}
			if !manifestExists(untagged) || !manifestExists(kept) {
				t.Fatal("dry run deleted a manifest")
			}
			for _, d := range keptBlobs {
				if strings.Contains(out, string(d)) {
					t.Fatalf("dry run lists referenced blob %s:\n%s", d, out)
				}
			}

			out, err = runCmd(t, "", "gc", "-c", b.config)
			if err != nil {
				t.Fatalf("gc: %v\n%s", err, out)
			}
			for _, w := range want {
				w = strings.Replace(w, "would delete", "deleted", 1)
				if !strings.Contains(out, w) {
					t.Fatalf("gc output lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "; 3 storage objects deleted") {
				t.Fatalf("gc output: %s", out)
			}
			for _, d := range gone {
				if exists(d) {
					t.Fatalf("unreferenced blob %s left", d)
				}
			}
			for _, d := range keptBlobs {
				if !exists(d) {
					t.Fatalf("referenced blob %s deleted", d)
				}
			}
			if manifestExists(untagged) || !manifestExists(kept) {
				t.Fatalf("after gc: untagged manifest there %v, tagged %v", manifestExists(untagged), manifestExists(kept))
			}
			out, err = runCmd(t, "", "gc", "-c", b.config)
			if err != nil || !strings.Contains(out, "deleted 0 manifests, 0 blobs") {
				t.Fatalf("second gc: %v\n%s", err, out)
			}
		})
	}
}

// TestMigrateQueuesExistingGarbage: a database at the schema before the
// review queues (0002) holding an unreferenced blob and an untagged
// manifest. wharf migrate only creates the queues (0003), so a plain
// wharf gc, which reads only the queues, finds nothing; wharf gc --rescan
// --dry-run counts the garbage, and wharf gc --rescan queues it and then
// collects it from the database and from storage, leaving the tagged
// image whole.
func TestMigrateQueuesExistingGarbage(t *testing.T) {
	for _, b := range metaBackends(t, "gc:\n  review_delay: 1ms\n  untagged: delete\n  untagged_after: 1ms\n") {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			all, err := b.migrations()
			if err != nil {
				t.Fatal(err)
			}
			v2 := slices.IndexFunc(all, func(m sqlstore.Migration) bool { return m.Version > 2 })
			if v2 < 0 {
				t.Fatalf("no migration after 0002 in %d", len(all))
			}
			db := b.sqlDB(t)
			if _, err := sqlstore.Migrate(ctx, db, all[:v2], b.dialect); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(b.config, nil)
			if err != nil {
				t.Fatal(err)
			}
			root := app.BlobRoot(cfg)
			exec := func(q string, args ...any) {
				t.Helper()
				if b.dialect.Numbered {
					for i := 1; strings.Contains(q, "?"); i++ {
						q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
					}
				}
				if _, err := db.ExecContext(ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			old := time.Now().Add(-time.Hour).UnixNano()
			exec(`INSERT INTO repositories (name, created_at) VALUES (?, ?)`, "team/app", old)
			blob := func(s string) digest.Digest {
				d := digest.FromString(s)
				key := filesystem.Key(d)
				p := filepath.Join(root, filepath.FromSlash(key))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
				exec(`INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?)`, string(d), len(s), key, old)
				exec(`INSERT INTO repository_blobs (repo, digest, created_at) VALUES (?, ?, ?)`, "team/app", string(d), old)
				return d
			}
			manifest := func(payload, tag string, blobs ...digest.Digest) digest.Digest {
				d := digest.FromString(payload)
				exec(`INSERT INTO manifests (repo, digest, media_type, payload, size, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
					"team/app", string(d), oci.MediaTypeOCIManifest, []byte(payload), len(payload), old)
				for _, bd := range blobs {
					exec(`INSERT INTO manifest_blobs (repo, manifest_digest, blob_digest) VALUES (?, ?, ?)`, "team/app", string(d), string(bd))
				}
				if tag != "" {
					exec(`INSERT INTO tags (repo, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)`, "team/app", tag, string(d), old)
				}
				return d
			}
			kept := blob("kept layer")
			orphan := blob("orphan: uploaded, never referenced")
			untaggedLayer := blob("untagged layer")
			keptM := manifest(`{"kept":1}`, "v1", kept)
			untaggedM := manifest(`{"untagged":1}`, "", untaggedLayer)

			out, err := runCmd(t, "", "migrate", "-c", b.config)
			if err != nil || !strings.Contains(out, "applying "+all[v2].Name) {
				t.Fatalf("migrate: %v\n%s", err, out)
			}
			time.Sleep(20 * time.Millisecond) // past the 1ms delays
			out, err = runCmd(t, "", "gc", "-c", b.config)
			if err != nil || !strings.Contains(out, "deleted 0 manifests, 0 blobs") {
				t.Fatalf("gc without --rescan: %v\n%s", err, out)
			}
			out, err = runCmd(t, "", "gc", "--rescan", "--dry-run", "-c", b.config)
			if err != nil || !strings.Contains(out, "rescan: would queue 1 blobs, 1 manifests for review") || !strings.Contains(out, "would delete 0 manifests, 0 blobs") {
				t.Fatalf("gc --rescan --dry-run: %v\n%s", err, out)
			}
			out, err = runCmd(t, "", "gc", "--rescan", "-c", b.config)
			if err != nil {
				t.Fatalf("gc --rescan: %v\n%s", err, out)
			}
			for _, w := range []string{"rescan: queued 1 blobs, 1 manifests for review", "deleted manifest team/app@" + string(untaggedM), "deleted blob " + string(orphan), "deleted blob " + string(untaggedLayer), "deleted 1 manifests, 2 blobs"} {
				if !strings.Contains(out, w) {
					t.Fatalf("gc output lacks %q:\n%s", w, out)
				}
			}
			rows := func(q string) []string {
				t.Helper()
				r, err := db.QueryContext(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				var got []string
				for r.Next() {
					var s string
					if err := r.Scan(&s); err != nil {
						t.Fatal(err)
					}
					got = append(got, s)
				}
				return got
			}
			if got := rows(`SELECT digest FROM blobs`); !slices.Equal(got, []string{string(kept)}) {
				t.Fatalf("blobs left %v, want %s", got, kept)
			}
			if got := rows(`SELECT digest FROM manifests`); !slices.Equal(got, []string{string(keptM)}) {
				t.Fatalf("manifests left %v, want %s", got, keptM)
			}
			for d, want := range map[digest.Digest]bool{kept: true, orphan: false, untaggedLayer: false} {
				if _, err := os.Stat(filepath.Join(root, filesystem.Key(d))); (err == nil) != want {
					t.Fatalf("object of %s: exists %v, want %v", d, err == nil, want)
				}
			}
		})
	}
}

// TestMain stops the shared PostgreSQL cluster the tests start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

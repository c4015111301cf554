package app

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/metadata/postgres"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/metadata/sqlstore"
	"github.com/wharf-registry/wharf/registry"
)

// MetaStore is what the binary needs of a metadata store: the registry's
// seam and the garbage collector's bookkeeping.
type MetaStore interface {
	registry.MetadataStore
	gc.Store
}

// OpenMetadata opens (and migrates) the store cfg.Metadata names. where
// describes it for logs, without credentials.
func OpenMetadata(ctx context.Context, cfg config.Config, log *slog.Logger) (m MetaStore, where string, err error) {
	switch cfg.Metadata.Driver {
	case config.MetadataPostgres:
		s, err := postgres.Open(ctx, postgres.Options{DSN: cfg.Metadata.Postgres.DSN, MaxConns: int32(cfg.Metadata.Postgres.MaxConns), Logger: log})
		if err != nil {
			return nil, "", err
		}
		return s, "postgres", nil
	default:
		p := SQLitePath(cfg)
		s, err := sqlite.Open(ctx, p)
		if err != nil {
			return nil, "", err
		}
		return s, p, nil
	}
}

// SQLitePath is the embedded database file of cfg.
func SQLitePath(cfg config.Config) string {
	if cfg.Metadata.SQLite.Path != "" {
		return cfg.Metadata.SQLite.Path
	}
	return filepath.Join(cfg.DataDir, "wharf.db")
}

// PendingMigrations lists what opening the store would apply, reading
// only (migrate --dry-run must change nothing): sqlstore.Pending creates
// schema_migrations when it is missing, so it is asked only when the
// table exists; without it (a database never migrated) all are pending.
func PendingMigrations(ctx context.Context, cfg config.Config) ([]sqlstore.Migration, error) {
	if cfg.Metadata.Driver == config.MetadataPostgres {
		all, err := postgres.Migrations()
		if err != nil {
			return nil, err
		}
		db, err := sql.Open("pgx", cfg.Metadata.Postgres.DSN)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		defer db.Close()
		return pendingIn(ctx, db, all, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations' AND table_schema = current_schema()`)
	}
	all, err := sqlite.Migrations()
	if err != nil {
		return nil, err
	}
	p := SQLitePath(cfg)
	if _, err := os.Stat(p); os.IsNotExist(err) {
		return all, nil
	}
	db, err := sql.Open("sqlite", "file:"+p)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return pendingIn(ctx, db, all, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`)
}

// pendingIn is sqlstore.Pending when exists (a count query) finds the
// schema_migrations table, and all of them when it does not.
func pendingIn(ctx context.Context, db *sql.DB, all []sqlstore.Migration, exists string) ([]sqlstore.Migration, error) {
	var n int
	if err := db.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return all, nil
	}
	return sqlstore.Pending(ctx, db, all)
}

// background starts what a replica runs beside serving: following other
// replicas' writes (when the store can tell) and the maintenance worker
// (upload expiry; GC when gc.interval is set), one replica at a time.
func background(ctx context.Context, cfg config.Config, meta MetaStore, reg *registry.Registry, blobs registry.BlobStore, log *slog.Logger) {
	if feed, ok := meta.(registry.ChangeFeed); ok {
		go func() { _ = feed.WatchRepos(ctx, reg.Invalidate) }()
	}
	host, _ := os.Hostname()
	w := &gc.Worker{
		Store: meta, ExpireUploads: reg.ExpireUploads, UploadMaxAge: cfg.Limits.UploadMaxAge,
		Holder: fmt.Sprintf("%s:%d:%d", host, os.Getpid(), time.Now().UnixNano()), Logger: log,
	}
	if cfg.GC.Interval > 0 {
		w.GCInterval = cfg.GC.Interval
		w.Collector = gc.New(meta, blobs, GCOptions(cfg, reg, log, false))
	}
	go w.Run(ctx)
}

// GCOptions are the collector's options of cfg; reg (nil outside serve)
// is told what a pass changed.
func GCOptions(cfg config.Config, reg *registry.Registry, log *slog.Logger, dry bool) gc.Options {
	o := gc.Options{
		ReviewDelay: cfg.GC.ReviewDelay, DeleteUntagged: cfg.GC.Untagged == config.UntaggedDelete, UntaggedAfter: cfg.GC.UntaggedAfter,
		DryRun: dry, Logger: log,
	}
	if reg != nil {
		o.Changed = reg.Invalidate
	}
	return o
}

// BlobRoot is the filesystem store's directory of cfg.
func BlobRoot(cfg config.Config) string {
	if cfg.Storage.Filesystem.Root != "" {
		return cfg.Storage.Filesystem.Root
	}
	return filepath.Join(cfg.DataDir, "blobs")
}

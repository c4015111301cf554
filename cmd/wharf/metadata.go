package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/metadata/postgres"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/metadata/sqlstore"
	"github.com/wharf-registry/wharf/registry"
)

// metaStore is what the binary needs of a metadata store: the registry's
// seam and the garbage collector's bookkeeping.
type metaStore interface {
	registry.MetadataStore
	gc.Store
}

// openMetadata opens (and migrates) the store cfg.Metadata names. where
// describes it for logs, without credentials.
func openMetadata(ctx context.Context, cfg config.Config, log *slog.Logger) (m metaStore, where string, err error) {
	switch cfg.Metadata.Driver {
	case "postgres":
		s, err := postgres.Open(ctx, postgres.Options{DSN: cfg.Metadata.Postgres.DSN, MaxConns: int32(cfg.Metadata.Postgres.MaxConns), Logger: log})
		if err != nil {
			return nil, "", err
		}
		return s, "postgres", nil
	default:
		p := sqlitePath(cfg)
		s, err := sqlite.Open(ctx, p)
		if err != nil {
			return nil, "", err
		}
		return s, p, nil
	}
}

func sqlitePath(cfg config.Config) string {
	if cfg.Metadata.SQLite.Path != "" {
		return cfg.Metadata.SQLite.Path
	}
	return filepath.Join(cfg.DataDir, "wharf.db")
}

// pendingMigrations lists what opening the store would apply, reading
// only (migrate --dry-run must change nothing): sqlstore.Pending creates
// schema_migrations when it is missing, so it is asked only when the
// table exists; without it (a database never migrated) all are pending.
func pendingMigrations(ctx context.Context, cfg config.Config) ([]sqlstore.Migration, error) {
	if cfg.Metadata.Driver == "postgres" {
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
	p := sqlitePath(cfg)
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
func background(ctx context.Context, cfg config.Config, meta metaStore, reg *registry.Registry, blobs registry.BlobStore, log *slog.Logger) {
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
		w.Collector = gc.New(meta, blobs, gcOptions(cfg, reg, log, false))
	}
	go w.Run(ctx)
}

func gcOptions(cfg config.Config, reg *registry.Registry, log *slog.Logger, dry bool) gc.Options {
	o := gc.Options{
		ReviewDelay: cfg.GC.ReviewDelay, DeleteUntagged: cfg.GC.Untagged == "delete", UntaggedAfter: cfg.GC.UntaggedAfter,
		DryRun: dry, Logger: log,
	}
	if reg != nil {
		o.Changed = reg.Invalidate
	}
	return o
}

// loadConfig reads --config and the environment, for the commands that
// are not serve.
func loadConfig(configFile, dataDir string, dataDirSet bool) (config.Config, error) {
	cfg, err := config.Load(configFile, os.Environ())
	if err != nil {
		return cfg, err
	}
	if dataDirSet {
		cfg.DataDir = dataDir
	}
	return cfg, nil
}

func newMigrateCmd() *cobra.Command {
	var (
		configFile, dataDir string
		dry                 bool
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending metadata schema migrations",
		Long: `Apply the metadata store's pending schema migrations (serve also does this
on start, under a lock so that replicas starting together migrate once).
With --dry-run, list the pending migrations and change nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile, dataDir, cmd.Flags().Changed("data-dir"))
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pending, err := pendingMigrations(ctx, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(pending) == 0 {
				fmt.Fprintln(out, "schema is up to date")
				return nil
			}
			for _, m := range pending {
				verb := "apply"
				if !dry {
					verb = "applying"
				}
				fmt.Fprintf(out, "%s %s\n", verb, m.Name)
			}
			if dry {
				fmt.Fprintf(out, "%d pending (dry run: nothing applied)\n", len(pending))
				return nil
			}
			log := newLogger(cfg.Log)
			meta, _, err := openMetadata(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer meta.Close()
			fmt.Fprintf(out, "%d applied\n", len(pending))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "YAML configuration file")
	f.StringVar(&dataDir, "data-dir", "./data", "data directory (WHARF_DATA_DIR)")
	f.BoolVar(&dry, "dry-run", false, "list pending migrations; apply nothing")
	return cmd
}

func newGCCmd() *cobra.Command {
	var (
		configFile, dataDir string
		dry, rescan         bool
	)
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Run one garbage collection pass",
		Long: `Run one online garbage collection pass against the configured metadata and
blob stores; the registry may keep serving meanwhile. Blobs no manifest
references, untouched for gc.review_delay, are deleted (from the database,
then from storage); with gc.untagged: delete, so are manifests older than
gc.untagged_after that no tag, index or live subject keeps. With --dry-run,
list what would go and delete nothing (untagged manifests freed by deleting
an index are found by the next pass).

A pass reviews only what the review queues hold, which every change feeds.
With --rescan, first queue every unreferenced blob and every untagged
manifest no index or live subject keeps that is not queued yet (a paged
scan, safe while serving; with --dry-run, only count them): run it once
after a rolling upgrade from a version without the queues, when the last
old replica is gone. The serve worker also rescans when it takes the
maintenance lease over, and daily.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile, dataDir, cmd.Flags().Changed("data-dir"))
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := newLogger(cfg.Log)
			blobs, _, err := openBlobStore(ctx, cfg, blobRootOf(cfg))
			if err != nil {
				return err
			}
			meta, _, err := openMetadata(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer meta.Close()
			col := gc.New(meta, blobs, gcOptions(cfg, nil, log, dry))
			out := cmd.OutOrStdout()
			if rescan {
				r, err := col.Rescan(ctx)
				if err != nil {
					return err
				}
				verb := "queued"
				if dry {
					verb = "would queue"
				}
				fmt.Fprintf(out, "rescan: %s %d blobs, %d manifests for review\n", verb, r.Blobs, r.Manifests)
			}
			res, err := col.Run(ctx)
			verb := "deleted"
			if dry {
				verb = "would delete"
			}
			for _, m := range res.Manifests {
				fmt.Fprintf(out, "%s manifest %s@%s\n", verb, m.Repo, m.Digest)
			}
			for _, b := range res.Blobs {
				fmt.Fprintf(out, "%s blob %s\n", verb, b.Digest)
			}
			fmt.Fprintf(out, "%s %d manifests, %d blobs (%d bytes); %d storage objects deleted in %s; %d queue entries reviewed\n",
				verb, len(res.Manifests), len(res.Blobs), res.Bytes, res.ObjectsGone, res.Duration.Round(time.Millisecond), res.Reviewed)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "YAML configuration file")
	f.StringVar(&dataDir, "data-dir", "./data", "data directory (WHARF_DATA_DIR)")
	f.BoolVar(&dry, "dry-run", false, "list what would be deleted; delete nothing")
	f.BoolVar(&rescan, "rescan", false, "first queue all existing garbage for review (with --dry-run: count it)")
	return cmd
}

func blobRootOf(cfg config.Config) string {
	if cfg.Storage.Filesystem.Root != "" {
		return cfg.Storage.Filesystem.Root
	}
	return filepath.Join(cfg.DataDir, "blobs")
}

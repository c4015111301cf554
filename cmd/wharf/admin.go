package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/gc"
)

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
			pending, err := app.PendingMigrations(ctx, cfg)
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
			meta, _, err := app.OpenMetadata(ctx, cfg, log)
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
			blobs, _, err := app.OpenBlobStore(ctx, cfg)
			if err != nil {
				return err
			}
			meta, _, err := app.OpenMetadata(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer meta.Close()
			col := gc.New(meta, blobs, app.GCOptions(cfg, nil, log, dry))
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

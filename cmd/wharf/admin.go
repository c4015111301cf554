package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/config"
)

// configFlags are --config and the flags that override a setting (such as
// --data-dir for WHARF_DATA_DIR), shared by every command that opens the
// registry's files. A flag is the last environment variable read, so
// config.Load validates its value with the rest.
type configFlags struct {
	file string
	env  map[string]string // flag name → environment variable
}

func (c *configFlags) add(cmd *cobra.Command, dataDirDefault string) {
	cmd.PersistentFlags().StringVarP(&c.file, "config", "c", "", "YAML configuration file")
	c.setting(cmd.PersistentFlags(), "data-dir", "WHARF_DATA_DIR", dataDirDefault, "data directory")
}

// setting adds a flag that overrides the setting of environment variable env.
func (c *configFlags) setting(f *pflag.FlagSet, name, env, value, usage string) {
	if c.env == nil {
		c.env = map[string]string{}
	}
	f.String(name, value, usage+" ("+env+")")
	c.env[name] = env
}

// load reads the defaults, --config, the environment, then the flags set.
func (c *configFlags) load(cmd *cobra.Command) (config.Config, error) {
	environ := os.Environ()
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if env, ok := c.env[f.Name]; ok {
			environ = append(environ, env+"="+f.Value.String())
		}
	})
	return config.Load(c.file, environ)
}

func newMigrateCmd() *cobra.Command {
	var (
		cf  configFlags
		dry bool
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending metadata schema migrations",
		Long: `Apply the metadata store's pending schema migrations (serve also does this
on start, under a lock so that replicas starting together migrate once).
With --dry-run, list the pending migrations and change nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(cmd)
			if err != nil {
				return err
			}
			pending, err := app.Migrate(cmd.Context(), cfg, app.NewLogger(cfg.Log, os.Stderr), dry)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(pending) == 0 {
				fmt.Fprintln(out, "schema is up to date")
				return nil
			}
			verb, done := "applying", "applied"
			if dry {
				verb, done = "apply", "pending (dry run: nothing applied)"
			}
			for _, m := range pending {
				fmt.Fprintf(out, "%s %s\n", verb, m.Name)
			}
			fmt.Fprintf(out, "%d %s\n", len(pending), done)
			return nil
		},
	}
	cf.add(cmd, "./data")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "list pending migrations; apply nothing")
	return cmd
}

func newGCCmd() *cobra.Command {
	var (
		cf          configFlags
		dry, rescan bool
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
			cfg, err := cf.load(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			col, closeStores, err := app.OpenCollector(ctx, cfg, app.NewLogger(cfg.Log, os.Stderr), dry)
			if err != nil {
				return err
			}
			defer closeStores()
			out := cmd.OutOrStdout()
			verb, queued := "deleted", "queued"
			if dry {
				verb, queued = "would delete", "would queue"
			}
			if rescan {
				r, err := col.Rescan(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "rescan: %s %d blobs, %d manifests for review\n", queued, r.Blobs, r.Manifests)
			}
			res, err := col.Run(ctx)
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
	cf.add(cmd, "./data")
	f := cmd.Flags()
	f.BoolVar(&dry, "dry-run", false, "list what would be deleted; delete nothing")
	f.BoolVar(&rescan, "rescan", false, "first queue all existing garbage for review (with --dry-run: count it)")
	return cmd
}

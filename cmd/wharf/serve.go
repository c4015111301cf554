package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/config"
)

func newServeCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry",
		Long: `Run the registry. With no flags and no config file it listens on :5000 and
keeps its metadata (SQLite) and blobs (files) under ./data.

Settings come from defaults, then the YAML file of --config, then WHARF_*
environment variables, then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// load is also the SIGHUP reload: the same sources, read again.
			load := func() (config.Config, error) { return cf.load(cmd) }
			cfg, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return serve(ctx, cfg, load)
		},
	}
	cf.add(cmd, "./data")
	f := cmd.Flags()
	cf.setting(f, "addr", "WHARF_ADDR", ":5000", "listen address")
	cf.setting(f, "tls-cert", "WHARF_TLS_CERT", "", "PEM certificate: serve HTTPS")
	cf.setting(f, "tls-key", "WHARF_TLS_KEY", "", "PEM private key of --tls-cert")
	return cmd
}

// serve runs the registry of cfg until ctx is done, then shuts down
// gracefully. On SIGHUP it calls reload (when not nil) and applies what
// can change while running (app.Reload).
func serve(ctx context.Context, cfg config.Config, reload func() (config.Config, error)) error {
	log := app.NewLogger(cfg.Log, os.Stderr)
	slog.SetDefault(log)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Version: version})
	if err != nil {
		return err
	}
	defer a.Close()
	if reload != nil {
		go reloadOnHangup(ctx, log, a, reload)
	}
	return a.Run(ctx)
}

// reloadOnHangup reloads the configuration on each SIGHUP until ctx is
// done; a configuration that does not load changes nothing.
func reloadOnHangup(ctx context.Context, log *slog.Logger, a *app.App, reload func() (config.Config, error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		next, err := reload()
		if err != nil {
			log.Error("reload: configuration refused; nothing changed", "err", err)
			continue
		}
		a.Reload(next)
	}
}

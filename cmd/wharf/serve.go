package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/server"
)

func newServeCmd() *cobra.Command {
	var (
		configFile string
		addr       string
		dataDir    string
		tlsCert    string
		tlsKey     string
	)
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
			load := func() (config.Config, error) {
				cfg, err := config.Load(configFile, os.Environ())
				if err != nil {
					return cfg, err
				}
				if cmd.Flags().Changed("addr") {
					cfg.Addr = addr
				}
				if cmd.Flags().Changed("data-dir") {
					cfg.DataDir = dataDir
				}
				if cmd.Flags().Changed("tls-cert") || cmd.Flags().Changed("tls-key") {
					cfg.TLS.Cert, cfg.TLS.Key = tlsCert, tlsKey
					if err := cfg.Validate(); err != nil {
						return cfg, err
					}
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, load)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "YAML configuration file")
	f.StringVar(&addr, "addr", ":5000", "listen address (WHARF_ADDR)")
	f.StringVar(&dataDir, "data-dir", "./data", "data directory (WHARF_DATA_DIR)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate: serve HTTPS (WHARF_TLS_CERT)")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key of --tls-cert (WHARF_TLS_KEY)")
	return cmd
}

func newLogger(c config.Log) *slog.Logger {
	return slog.New(server.ContextHandler(newLogHandler(c)))
}

func newLogHandler(c config.Log) slog.Handler {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" {
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.NewJSONHandler(os.Stderr, opts)
}

// serve runs the registry of cfg until ctx is done, then shuts down
// gracefully. On SIGHUP it calls reload (when not nil) and applies what
// can change while running (app.Reload).
func serve(ctx context.Context, cfg config.Config, reload func() (config.Config, error)) error {
	log := newLogger(cfg.Log)
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

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
	"github.com/wharf-registry/wharf/signer"
)

func newServeCmd() *cobra.Command {
	var (
		configFile string
		addr       string
		dataDir    string
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
			cfg, err := config.Load(configFile, os.Environ())
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("addr") {
				cfg.Addr = addr
			}
			if cmd.Flags().Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configFile, "config", "c", "", "YAML configuration file")
	f.StringVar(&addr, "addr", ":5000", "listen address (WHARF_ADDR)")
	f.StringVar(&dataDir, "data-dir", "./data", "data directory (WHARF_DATA_DIR)")
	return cmd
}

func newLogger(c config.Log) *slog.Logger {
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
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// serve runs the registry until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, cfg config.Config) error {
	log := newLogger(cfg.Log)
	slog.SetDefault(log)

	blobRoot := cfg.Storage.Filesystem.Root
	if blobRoot == "" {
		blobRoot = filepath.Join(cfg.DataDir, "blobs")
	}
	dbPath := cfg.Metadata.SQLite.Path
	if dbPath == "" {
		dbPath = filepath.Join(cfg.DataDir, "wharf.db")
	}
	blobs, err := filesystem.New(blobRoot)
	if err != nil {
		return err
	}
	meta, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer meta.Close()

	keysFile := cfg.Signing.KeysFile
	if keysFile == "" {
		keysFile = filepath.Join(cfg.DataDir, "signing-keys.json")
	}
	active, keys, err := signer.LoadOrCreateKeys(keysFile)
	if err != nil {
		return err
	}
	sign, err := signer.NewLocal(active, keys...)
	if err != nil {
		return err
	}

	reg := registry.New(meta, blobs, registry.Options{MaxManifestBytes: cfg.Limits.ManifestMaxBytes, Logger: log, Signer: sign})
	srv := server.New(server.Options{
		Registry: reg, Logger: log, PublicURL: cfg.PublicURL,
		Downloads: sign, Redirect: cfg.Redirect.Enabled, RedirectExpiry: cfg.Redirect.Expiry,
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go expireUploads(ctx, reg, cfg.Limits.UploadMaxAge, log)

	log.Info("wharf serving", "version", version, "addr", ln.Addr().String(),
		"metadata", dbPath, "blobs", blobRoot, "signing_key", active.ID, "redirect", cfg.Redirect.Enabled)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.HTTP.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// expireUploads aborts idle upload sessions every few minutes.
func expireUploads(ctx context.Context, reg *registry.Registry, maxAge time.Duration, log *slog.Logger) {
	if maxAge <= 0 {
		return
	}
	t := time.NewTicker(min(maxAge/4, 10*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := reg.ExpireUploads(ctx, maxAge)
			if err != nil {
				log.Warn("expiring uploads", "err", err)
			} else if n > 0 {
				log.Info("expired idle uploads", "count", n)
			}
		}
	}
}

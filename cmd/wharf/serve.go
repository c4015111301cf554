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

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/server"
	"github.com/wharf-registry/wharf/signer"
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

// serve runs the registry until ctx is done, then shuts down gracefully.
// On SIGHUP it calls reload (when not nil) and applies what can change
// while running (see reloadOnHangup).
func serve(ctx context.Context, cfg config.Config, reload func() (config.Config, error)) error {
	log := newLogger(cfg.Log)
	slog.SetDefault(log)
	warnPerReplicaFiles(cfg, log)

	blobRoot := cfg.Storage.Filesystem.Root
	if blobRoot == "" {
		blobRoot = filepath.Join(cfg.DataDir, "blobs")
	}
	blobs, blobRoot, err := openBlobStore(ctx, cfg, blobRoot)
	if err != nil {
		return err
	}
	meta, dbPath, err := openMetadata(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer meta.Close()

	active, keys, err := signingKeys(cfg, log)
	if err != nil {
		return err
	}
	sign, err := signer.NewLocal(active, keys...)
	if err != nil {
		return err
	}

	urls, err := urlSigner(cfg, blobs, sign)
	if err != nil {
		return err
	}
	ops := newOps(cfg, log)
	if err := ops.startTracing(ctx); err != nil {
		return err
	}
	defer ops.stopTracing() // after the server's shutdown: flushes every request's span
	regMeta, regBlobs, urls := ops.stores(meta, blobs, urls)
	reg := registry.New(regMeta, regBlobs, registry.Options{MaxManifestBytes: cfg.Limits.ManifestMaxBytes, MaxManifestReferences: cfg.Limits.ManifestMaxReferences, Logger: log, Signer: urls})
	authz, tokenHandler, err := newAuth(cfg, log)
	if err != nil {
		return err
	}
	if reload != nil {
		svc, _ := authz.(*service.Service)
		go reloadOnHangup(ctx, log, cfg, svc, reload)
	}
	if svc, ok := authz.(*service.Service); ok {
		ops.adminOnly = svc.AdminOnly
	}
	authz = ops.authorizer(authz)
	tlsConfig, err := newTLSConfig(cfg.TLS)
	if err != nil {
		return err
	}
	so := server.Options{
		Registry: reg, Logger: log, PublicURL: cfg.PublicURL, Auth: authz,
		Downloads: sign, Redirect: cfg.Redirect.Enabled, RedirectExpiry: cfg.Redirect.Expiry,
	}
	if err := ops.serverOptions(&so); err != nil {
		return err
	}
	srv := server.New(so)
	if err := ops.routes(srv, reg, checks(cfg, meta, blobs, blobRoot)); err != nil {
		return err
	}
	defer ops.close(context.Background())
	if tokenHandler != nil {
		srv.Handle(service.TokenPath, tokenHandler)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	warnPlainHTTP(cfg, ln, log)
	background(ctx, cfg, meta, reg, blobs, log)

	log.Info("wharf serving", "version", version, "addr", ln.Addr().String(),
		"metadata", dbPath, "blobs", blobRoot, "signing_key", active.ID, "signer", cfg.Signing.Signer, "redirect", cfg.Redirect.Enabled,
		"auth", cfg.Auth.Mode, "tls", tlsConfig != nil)
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	ops.drain(context.Background())
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

// warnPerReplicaFiles warns, on PostgreSQL (the scale-out store, so
// likely several replicas), about each secret file left at its default
// under data_dir, which is per replica: replicas that create their own
// signing keys, token key or users file reject each other's signed URLs
// and tokens and disagree on users.
func warnPerReplicaFiles(cfg config.Config, log *slog.Logger) {
	if cfg.Metadata.Driver != "postgres" {
		return
	}
	atDefault := func(set, name string) bool {
		return set == "" || filepath.Clean(set) == filepath.Join(cfg.DataDir, name)
	}
	warn := func(setting, name string) {
		log.Warn(setting+" is at its default under data_dir, which is per replica: replicas sharing a PostgreSQL database must share this file (point it at shared storage or a mounted secret)",
			"setting", setting, "path", filepath.Join(cfg.DataDir, name))
	}
	if cfg.Signing.Keys == "" && atDefault(cfg.Signing.KeysFile, "signing-keys.json") {
		warn("signing.keys_file", "signing-keys.json")
	}
	if cfg.Auth.Mode == "token" && atDefault(cfg.Auth.Token.KeyFile, "token-key.pem") {
		warn("auth.token.key_file", "token-key.pem")
	}
	if (cfg.Auth.Mode == "basic" || cfg.Auth.Mode == "token") && atDefault(cfg.Auth.Htpasswd, "htpasswd") {
		warn("auth.htpasswd", "htpasswd")
	}
}

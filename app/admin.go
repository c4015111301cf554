package app

import (
	"context"
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/metadata/sqlstore"
	"github.com/wharf-registry/wharf/server"
)

// NewLogger is the logger of c writing to w: JSON, or text when the format
// is "auto" and w is a terminal; every record carries the request's ID.
func NewLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // config.Validate checked it
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(server.ContextHandler(h))
}

// Migrate applies the metadata store's pending migrations (with dry, only
// lists them) and returns what was (or would be) applied.
func Migrate(ctx context.Context, cfg config.Config, log *slog.Logger, dry bool) ([]sqlstore.Migration, error) {
	pending, err := PendingMigrations(ctx, cfg)
	if err != nil || len(pending) == 0 || dry {
		return pending, err
	}
	meta, _, err := OpenMetadata(ctx, cfg, log) // opening migrates
	if err != nil {
		return nil, err
	}
	return pending, meta.Close()
}

// OpenCollector opens the stores of cfg for one garbage-collection pass
// outside serve (wharf gc); close releases them.
func OpenCollector(ctx context.Context, cfg config.Config, log *slog.Logger, dry bool) (col *gc.Collector, close func() error, err error) {
	blobs, _, err := OpenBlobStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	meta, _, err := OpenMetadata(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return gc.New(meta, blobs, GCOptions(cfg, nil, log, dry)), meta.Close, nil
}

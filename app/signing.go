package app

import (
	"log/slog"
	"path/filepath"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/signer"
)

// signingKeys are the URL-signing keys: inline from signing.keys
// (WHARF_SIGNING_KEYS), else from signing.keys_file, created with one
// random key on first start.
func signingKeys(cfg config.Config, log *slog.Logger) (signer.Key, []signer.Key, error) {
	if cfg.Signing.Keys != "" {
		active, keys, err := signer.ParseKeys(cfg.Signing.Keys)
		if err == nil {
			log.Info("signing keys from configuration", "active", active.ID, "keys", len(keys))
		}
		return active, keys, err
	}
	path := cfg.Signing.KeysFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, "signing-keys.json")
	}
	return signer.LoadOrCreateKeys(path)
}

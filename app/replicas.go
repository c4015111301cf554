package app

import (
	"log/slog"
	"path/filepath"

	"github.com/wharf-registry/wharf/config"
)

// warnPerReplicaFiles warns, on PostgreSQL (the scale-out store, so
// likely several replicas), about each secret file left at its default
// under data_dir, which is per replica: replicas that create their own
// signing keys, token key or users file reject each other's signed URLs
// and tokens and disagree on users.
func warnPerReplicaFiles(cfg config.Config, log *slog.Logger) {
	if cfg.Metadata.Driver != config.MetadataPostgres {
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
	if cfg.Auth.Mode == config.AuthToken && atDefault(cfg.Auth.Token.KeyFile, "token-key.pem") {
		warn("auth.token.key_file", "token-key.pem")
	}
	if (cfg.Auth.Mode == config.AuthBasic || cfg.Auth.Mode == config.AuthToken) && atDefault(cfg.Auth.Htpasswd, "htpasswd") {
		warn("auth.htpasswd", "htpasswd")
	}
}

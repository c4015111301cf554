package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/pgtest"
)

// perReplicaWarnings returns the settings warned about as per replica in
// JSON logs, sorted.
func perReplicaWarnings(t *testing.T, logs []byte) []string {
	t.Helper()
	var out []string
	for _, line := range bytes.Split(logs, []byte("\n")) {
		var rec struct{ Level, Msg, Setting string }
		if json.Unmarshal(line, &rec) == nil && rec.Level == "WARN" && rec.Setting != "" && strings.Contains(rec.Msg, "per replica") {
			out = append(out, rec.Setting)
		}
	}
	slices.Sort(out)
	return out
}

// TestPerReplicaFileWarnings: on PostgreSQL each secret file left at its
// default under data_dir is warned about (as replicas must share it); set
// elsewhere, inline, unused in the auth mode, or on SQLite it is not.
func TestPerReplicaFileWarnings(t *testing.T) {
	const dd = "/var/lib/wharf"
	for _, tc := range []struct {
		name string
		edit func(c *config.Config)
		want []string
	}{
		{"sqlite token", func(c *config.Config) { c.Auth.Mode = "token" }, nil},
		{"postgres none", func(c *config.Config) { c.Metadata.Driver = "postgres" }, []string{"signing.keys_file"}},
		{"postgres basic", func(c *config.Config) { c.Metadata.Driver, c.Auth.Mode = "postgres", "basic" },
			[]string{"auth.htpasswd", "signing.keys_file"}},
		{"postgres token", func(c *config.Config) { c.Metadata.Driver, c.Auth.Mode = "postgres", "token" },
			[]string{"auth.htpasswd", "auth.token.key_file", "signing.keys_file"}},
		{"postgres token, defaults spelt out", func(c *config.Config) {
			c.Metadata.Driver, c.Auth.Mode = "postgres", "token"
			c.Signing.KeysFile = dd + "/signing-keys.json"
			c.Auth.Token.KeyFile = dd + "/./token-key.pem"
			c.Auth.Htpasswd = dd + "/htpasswd"
		}, []string{"auth.htpasswd", "auth.token.key_file", "signing.keys_file"}},
		{"postgres token, shared", func(c *config.Config) {
			c.Metadata.Driver, c.Auth.Mode = "postgres", "token"
			c.Signing.KeysFile = "/run/secrets/wharf/signing-keys.json"
			c.Auth.Token.KeyFile = "/run/secrets/wharf/token-key.pem"
			c.Auth.Htpasswd = "/run/secrets/wharf/htpasswd"
		}, nil},
		{"postgres, inline signing keys", func(c *config.Config) {
			c.Metadata.Driver = "postgres"
			c.Signing.Keys = "k1:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = dd
			tc.edit(&cfg)
			var buf bytes.Buffer
			warnPerReplicaFiles(cfg, slog.New(slog.NewJSONHandler(&buf, nil)))
			if got := perReplicaWarnings(t, buf.Bytes()); !slices.Equal(got, tc.want) {
				t.Fatalf("warned about %v, want %v\n%s", got, tc.want, buf.String())
			}
		})
	}
}

// TestNewWarnsPerReplicaFiles: building the registry logs the warnings
// on PostgreSQL, and not on SQLite.
func TestNewWarnsPerReplicaFiles(t *testing.T) {
	dsn := pgtest.DSN(t)
	for _, driver := range []config.MetadataDriver{config.MetadataPostgres, config.MetadataSQLite} {
		t.Run(string(driver), func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir, cfg.Addr = t.TempDir(), "127.0.0.1:0"
			cfg.Auth.Mode = "token"
			cfg.Metadata.Driver, cfg.Metadata.Postgres.DSN = driver, dsn
			var logs bytes.Buffer
			a, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			a.Close()
			var want []string
			if driver == "postgres" {
				want = []string{"auth.htpasswd", "auth.token.key_file", "signing.keys_file"}
			}
			if got := perReplicaWarnings(t, logs.Bytes()); !slices.Equal(got, want) {
				t.Fatalf("New on %s warned about %v, want %v\n%s", driver, got, want, logs.String())
			}
		})
	}
}

// TestMain stops the shared PostgreSQL cluster the tests start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wharf-registry/wharf/config"
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

// TestServeWarnsPerReplicaFiles: serve itself logs the warnings at start
// on PostgreSQL, and not on SQLite.
func TestServeWarnsPerReplicaFiles(t *testing.T) {
	dsn := newPGDatabase(t)
	for _, driver := range []string{"postgres", "sqlite"} {
		t.Run(driver, func(t *testing.T) {
			// serve logs to os.Stderr (taken when it starts): catch it.
			f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			stderr := os.Stderr
			os.Stderr = f
			defer func() { os.Stderr = stderr }()
			_, _, stop := startServe(t, func(c *config.Config) {
				c.Metrics.Addr, c.Metrics.Pprof = "", false
				c.Auth.Mode = "token"
				c.Metadata.Driver = driver
				c.Metadata.Postgres.DSN = dsn
			})
			stop()
			os.Stderr = stderr
			logs, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			if driver == "postgres" {
				want = []string{"auth.htpasswd", "auth.token.key_file", "signing.keys_file"}
			}
			if got := perReplicaWarnings(t, logs); !slices.Equal(got, want) {
				t.Fatalf("serve on %s warned about %v, want %v\n%s", driver, got, want, logs)
			}
		})
	}
}

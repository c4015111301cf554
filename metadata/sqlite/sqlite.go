// Package sqlite opens Wharf's embedded metadata store: one SQLite file in
// WAL mode through the pure-Go modernc.org/sqlite driver, so the binary
// needs no cgo and no server.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/wharf-registry/wharf/metadata/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded schema migrations.
func Migrations() ([]sqlstore.Migration, error) {
	return sqlstore.LoadMigrations(migrationFiles, "migrations")
}

// Open opens (creating if needed) the database at path and migrates it.
// Writes go through one connection, since SQLite has one writer anyway and
// waiting in Go is cheaper than SQLITE_BUSY retries; reads use a pool.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	// Private images' metadata: readable by this user only. SQLite gives
	// the -wal and -shm files the database file's mode.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	pragmas := url.Values{}
	for _, p := range []string{
		"busy_timeout(10000)",
		"journal_mode(WAL)",
		// NORMAL in WAL mode: a process crash loses nothing; a power loss
		// may lose the last transactions but never corrupts the database.
		"synchronous(NORMAL)",
		"foreign_keys(ON)",
	} {
		pragmas.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + pragmas.Encode()
	write, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	ms, err := Migrations()
	if err != nil {
		write.Close()
		return nil, err
	}
	if _, err := sqlstore.Migrate(ctx, write, ms, sqlstore.Dialect{}); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", dsn+"&mode=ro")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	read.SetConnMaxIdleTime(0)
	return sqlstore.New(read, write, sqlstore.Dialect{}), nil
}

// Package pgtest runs throwaway PostgreSQL clusters for tests: initdb into a
// temporary directory, a postmaster on a free loopback port, one fresh
// database per test, everything removed at the end.
//
// PostgreSQL refuses to run as root. When the tests run as root the cluster
// runs as the "postgres" system user (Debian's package creates it) or, if
// that does not exist, as a "wharf-test" system user created with useradd.
//
// Without PostgreSQL binaries the tests that need them skip, unless
// WHARFDEV_REQUIRE_SERVERS=1 (CI sets it), when they fail. The binaries are
// looked up in $WHARFDEV_PG_BIN, then /usr/lib/postgresql/<newest>/bin, then
// PATH. WHARFDEV_TEST_POSTGRES_DSN points the tests at an existing server
// (a PostgreSQL-compatible engine, say) instead: its user must be able to
// create databases.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/wharf-registry/wharf/internal/freeport"
)

// Cluster is a running PostgreSQL server.
type Cluster struct {
	// Dir holds the data directory, the socket and the server log.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// adminDSN connects as the superuser to the postgres database.
	adminDSN string
	cmd      *exec.Cmd
	done     chan struct{}
	external bool
	// bin, data and cred start the server again (Up).
	bin, data string
	cred      *syscall.Credential
}

// ErrNoBinaries is returned by Start when PostgreSQL is not installed.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL binaries (initdb, postgres) not found; install the Debian package postgresql")

// BinDir finds the directory holding initdb and postgres.
func BinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("WHARFDEV_PG_BIN"); d != "" {
		candidates = append(candidates, d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	candidates = append(candidates, dirs...)
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// runAs returns the credential to run the server with: nil when we are not
// root, else a system user that is not root.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		u, err = user.Lookup("wharf-test")
	}
	if err != nil {
		out, uerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "wharf-test").CombinedOutput()
		if uerr != nil && !strings.Contains(string(out), "already exists") {
			return nil, fmt.Errorf("pgtest: running as root and no postgres user; useradd wharf-test: %v: %s", uerr, out)
		}
		if u, err = user.Lookup("wharf-test"); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Start initializes and starts a new cluster. Stop it with Stop.
func Start() (*Cluster, error) {
	if dsn := os.Getenv("WHARFDEV_TEST_POSTGRES_DSN"); dsn != "" {
		return &Cluster{adminDSN: dsn, external: true}, nil
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wharf-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Env = serverEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	c.bin, c.data, c.cred = bin, data, cred
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = c.startServer(0); lastErr == nil {
			ok = true
			return c, nil
		}
	}
	return nil, lastErr
}

func serverEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C", "TZ=UTC"}
}

// startServer starts the postmaster on port, or on a free one if 0.
func (c *Cluster) startServer(port int) error {
	bin, data, cred := c.bin, c.data, c.cred
	if port == 0 {
		var err error
		if port, err = freeport.Port(); err != nil {
			return err
		}
	}
	logPath := filepath.Join(c.Dir, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", c.Dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		// A throwaway cluster: durability is not what the tests measure.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with the test process, even a killed one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	c.cmd, c.Port, c.done = cmd, port, make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.done) }()
	c.adminDSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			b, _ := os.ReadFile(logPath)
			c.cmd = nil
			return fmt.Errorf("pgtest: postgres exited at start:\n%s", tail(b))
		default:
		}
		if err := ping(c.adminDSN); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	c.stopServer()
	return fmt.Errorf("pgtest: postgres did not accept connections in 60s:\n%s", tail(b))
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func ping(dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

func (c *Cluster) stopServer() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	c.cmd = nil
}

// Down shuts the server down (a fast shutdown, as a service restart does)
// and keeps its data, so a test can watch its clients while the database
// is gone. Up starts it again.
func (c *Cluster) Down() {
	if c != nil && !c.external {
		c.stopServer()
	}
}

// Up starts a server stopped by Down on the same port and data directory.
func (c *Cluster) Up() error {
	if c.external || c.cmd != nil {
		return nil
	}
	return c.startServer(c.Port)
}

// Restart is Down then Up: what clients see of a database restart.
func (c *Cluster) Restart() error {
	if c.external {
		return errors.New("pgtest: cannot restart an external server")
	}
	c.Down()
	return c.Up()
}

// Stop shuts the server down and removes its directory.
func (c *Cluster) Stop() {
	if c == nil || c.external {
		return
	}
	c.stopServer()
	if c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
}

// DSN returns the URL of database name on the cluster.
func (c *Cluster) DSN(name string) string {
	u, err := url.Parse(c.adminDSN)
	if err != nil {
		return c.adminDSN
	}
	u.Path = "/" + name
	return u.String()
}

var dbSeq atomic.Int64

// CreateDatabase makes a new, empty database and returns its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context) (name, dsn string, err error) {
	name = fmt.Sprintf("wharf_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	db, err := sql.Open("pgx", c.adminDSN)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return "", "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return name, c.DSN(name), nil
}

// DropDatabase removes a database made by CreateDatabase.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	db, err := sql.Open("pgx", c.adminDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	return err
}

// Required reports whether missing servers fail tests instead of skipping them.
func Required() bool { return os.Getenv("WHARFDEV_REQUIRE_SERVERS") == "1" }

var shared struct {
	mu sync.Mutex
	c  *Cluster
}

// Shared returns the test binary's cluster, starting it on first use. It
// skips t when PostgreSQL is not installed (fails under
// WHARFDEV_REQUIRE_SERVERS=1). Call Main from TestMain to stop it at the end;
// without that it dies with the test process.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		return shared.c
	}
	c, err := Start()
	if errors.Is(err, ErrNoBinaries) && !Required() {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	shared.c = c
	return c
}

// Private starts a cluster of t's own (one it may stop and restart without
// disturbing other tests), stopped when t ends; it skips or fails like
// Shared.
func Private(t testing.TB) *Cluster {
	t.Helper()
	c, err := Start()
	if errors.Is(err, ErrNoBinaries) && !Required() {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// DSN returns the DSN of a fresh database on the shared cluster, dropped
// when the test ends.
func DSN(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	ctx := context.Background()
	name, dsn, err := c.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.DropDatabase(context.Background(), name); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return dsn
}

// Main runs the tests and then stops the shared cluster:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.c.Stop()
	shared.c = nil
	return code
}

// Package postgres opens Wharf's scale-out metadata store: PostgreSQL (or
// a PostgreSQL-compatible engine) through pgx v5 and its pool, handed to
// the shared SQL store (metadata/sqlstore) as a database/sql handle. It
// runs its own embedded migrations on open, under an advisory lock so
// replicas starting together migrate once, and it tells every replica
// about writes with LISTEN/NOTIFY so their caches follow.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/wharf-registry/wharf/metadata/sqlstore"
	"github.com/wharf-registry/wharf/registry"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded schema migrations.
func Migrations() ([]sqlstore.Migration, error) {
	return sqlstore.LoadMigrations(migrationFiles, "migrations")
}

// Options configure the store.
type Options struct {
	// DSN is a PostgreSQL URL or keyword/value string.
	DSN string
	// MaxConns bounds the connection pool (default 16).
	MaxConns int32
	// SkipMigrate opens without applying pending migrations (wharf migrate
	// --dry-run); the caller must not use a store whose schema is behind.
	SkipMigrate bool
	// FallbackTTL is how often every cache is dropped while the change
	// listener is not connected (default 1s).
	FallbackTTL time.Duration
	// Logger receives listener and migration notes; nil is slog.Default().
	Logger *slog.Logger
}

// Store is the PostgreSQL metadata store.
type Store struct {
	*sqlstore.Store
	pool      *pgxpool.Pool
	db        *sql.DB
	notify    bool
	ttl       time.Duration
	log       *slog.Logger
	listening atomic.Bool
	applied   []sqlstore.Migration
	waiters   sync.Map // notification token -> chan struct{} (Expect)
}

// echoWait bounds how long a write waits for the other replicas.
const echoWait = time.Second

// ackChannel carries acknowledgements: a listener that applied a change
// notification answers with its token on this channel.
const ackChannel = "wharf_ack"

// listenerApp is the application_name of listener connections, so a writer
// can count the replicas that must acknowledge its change.
const listenerApp = "wharf-listener"

// waiter counts the acknowledgements of one write's notification.
type waiter struct {
	mu   sync.Mutex
	acks int
	want int // 0 until the writer knows how many listeners there are
	done chan struct{}
}

func (w *waiter) check() {
	if w.want > 0 && w.acks >= w.want {
		select {
		case <-w.done:
		default:
			close(w.done)
		}
	}
}

// Expect implements sqlstore.Echoer, as an invalidation barrier: after its
// commit a write waits until every connected replica's listener (this
// one's included) has applied its notification and said so on ackChannel.
// Then no replica serves the old state to the client's next request, which
// is what the spec's "a deleted manifest is gone" needs behind a load
// balancer. The wait is bounded; without a listener it is skipped.
func (s *Store) Expect(token string) (wait func(context.Context), cancel func()) {
	w := &waiter{done: make(chan struct{})}
	s.waiters.Store(token, w)
	cancel = func() { s.waiters.Delete(token) }
	wait = func(ctx context.Context) {
		defer cancel()
		if !s.listening.Load() {
			return
		}
		var n int
		qctx, qcancel := context.WithTimeout(ctx, echoWait)
		err := s.pool.QueryRow(qctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, listenerApp).Scan(&n)
		qcancel()
		if err != nil || n == 0 {
			n = 1 // at least our own listener
		}
		w.mu.Lock()
		w.want = n
		w.check()
		w.mu.Unlock()
		t := time.NewTimer(echoWait)
		defer t.Stop()
		select {
		case <-w.done:
		case <-t.C:
			s.log.Warn("postgres: not every replica acknowledged a change in time; some may serve the old state briefly", "wait", echoWait, "replicas", n)
		case <-ctx.Done():
		}
	}
	return wait, cancel
}

var (
	_ registry.MetadataStore = (*Store)(nil)
	_ registry.ChangeFeed    = (*Store)(nil)
)

// migrationLockID is the pg_advisory_lock key migrations run under
// ("wharf" in ASCII).
const migrationLockID = 0x7768617266

// Open connects, migrates (unless opts.SkipMigrate) and returns the store.
func Open(ctx context.Context, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16
	}
	cfg.MaxConns = opts.MaxConns
	if opts.FallbackTTL <= 0 {
		opts.FallbackTTL = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{pool: pool, db: db, ttl: opts.FallbackTTL, log: log}
	fail := func(err error) (*Store, error) {
		db.Close()
		pool.Close()
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("postgres: %w", err))
	}
	if !opts.SkipMigrate {
		if s.applied, err = migrate(ctx, db, log); err != nil {
			return fail(err)
		}
	}
	// NOTIFY is PostgreSQL's; some compatible engines lack it. Without it,
	// replicas fall back to dropping caches every FallbackTTL.
	if _, err := db.ExecContext(ctx, `SELECT pg_notify('`+sqlstore.NotifyChannel+`', '')`); err == nil {
		s.notify = true
	} else {
		log.Warn("postgres: no LISTEN/NOTIFY; replicas' caches expire after a TTL instead", "ttl", s.ttl, "err", err)
	}
	s.Store = sqlstore.New(db, db, sqlstore.Dialect{Numbered: true, RowLocks: true, Notify: s.notify, Retryable: retryable, Unavailable: unavailable, Echo: s})
	return s, nil
}

// Applied lists the migrations Open applied.
func (s *Store) Applied() []sqlstore.Migration { return s.applied }

// Pending lists the migrations the database at dsn has not applied yet.
func Pending(ctx context.Context, dsn string) ([]sqlstore.Migration, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer db.Close()
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	return sqlstore.Pending(ctx, db, all)
}

// migrate applies pending migrations while holding an advisory lock, so
// that of several replicas starting at once one migrates and the others
// wait, then find nothing to do. Engines without advisory locks
// (CockroachDB) migrate without it: each migration is one transaction with
// its schema_migrations row, and a replica that loses the race re-reads
// what was applied (see sqlstore.Migrate).
func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) ([]sqlstore.Migration, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close()
	locked := true
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		if !unsupported(err) {
			return nil, fmt.Errorf("postgres: migration lock: %w", err)
		}
		locked = false
		log.Warn("postgres: no advisory locks; migrating without a lock", "err", err)
	}
	if locked {
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockID)
		}()
	}
	applied, err := sqlstore.Migrate(ctx, db, all, sqlstore.Dialect{Numbered: true})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	for _, m := range applied {
		log.Info("postgres: applied migration", "migration", m.Name)
	}
	return applied, nil
}

// unsupported reports an error saying the engine lacks a function or feature.
func unsupported(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42883" /* undefined_function */ || pe.Code == "0A000" /* feature_not_supported */)
}

// retryable: serialization failures and deadlocks, after which the whole
// transaction may run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// unavailable: the database could not be reached or went away (refused,
// reset, shutting down or starting up, timed out, a connection closed
// under the query), as opposed to an answer it gave. During a restart
// every query fails one of these ways for a few seconds.
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// 08: connection exception; 57P01..57P03: admin or crash
		// shutdown, cannot connect now; 53300: too many connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// Listening reports whether the change listener is connected.
func (s *Store) Listening() bool { return s.listening.Load() }

// WatchRepos implements registry.ChangeFeed: it LISTENs for the
// repositories other replicas (and this one) changed and calls changed
// with each; changed("") means "anything may have changed" and is called
// on (re)connect and, while the listener is down, every FallbackTTL. It
// returns when ctx is done.
func (s *Store) WatchRepos(ctx context.Context, changed func(repo string)) error {
	if !s.notify {
		return s.ttlOnly(ctx, changed)
	}
	backoff := s.ttl
	for ctx.Err() == nil {
		err := s.listen(ctx, changed)
		s.listening.Store(false)
		if ctx.Err() != nil {
			break
		}
		changed("")
		s.log.Warn("postgres: change listener disconnected; caches expire every TTL until it is back", "ttl", s.ttl, "err", err)
		// Down: drop every cache each TTL until the listener is back.
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		changed("")
	}
	return nil
}

func (s *Store) ttlOnly(ctx context.Context, changed func(string)) error {
	t := time.NewTicker(s.ttl)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed("")
		}
	}
}

// listen holds one LISTEN connection until it fails or ctx is done.
func (s *Store) listen(ctx context.Context, changed func(string)) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cfg := s.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = listenerApp
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+sqlstore.NotifyChannel+`; LISTEN `+ackChannel); err != nil {
		return err
	}
	s.listening.Store(true)
	// Whatever happened while we were not listening is unknown.
	changed("")
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			if n.Channel == ackChannel {
				if v, ok := s.waiters.Load(n.Payload); ok {
					w := v.(*waiter)
					w.mu.Lock()
					w.acks++
					w.check()
					w.mu.Unlock()
				}
				continue
			}
			repo, token := sqlstore.ParseNotifyPayload(n.Payload)
			changed(repo)
			if token != "" {
				// Tell the writer this replica has dropped its stale state.
				if _, err := conn.Exec(ctx, `SELECT pg_notify('`+ackChannel+`', $1)`, token); err != nil {
					return err
				}
			}
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
			return err
		}
		// Quiet for a while: make sure the connection is still alive.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// DB is the database/sql handle over the pool (for tools and tests).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the store and its pool.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}

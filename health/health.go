// Package health answers a load balancer: /livez (the process serves) and
// /readyz (the stores it needs are reachable and it is not shutting down).
// Readiness is computed at most once per cache period, however often it is
// polled, and turns false the moment shutdown starts so the load balancer
// drains the replica before it stops accepting connections.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Check is one readiness condition.
type Check struct {
	Name string
	// Func returns nil when ready. It is given a context with Timeout.
	Func func(ctx context.Context) error
}

// Checker runs checks and caches the answer.
type Checker struct {
	checks   []Check
	cacheFor time.Duration
	timeout  time.Duration
	now      func() time.Time

	draining atomic.Bool
	polled   atomic.Bool

	mu     sync.Mutex // one refresh at a time
	cached atomic.Pointer[result]
}

type result struct {
	at     time.Time
	ok     bool
	body   []byte
	failed map[string]string
}

// Options tune a Checker.
type Options struct {
	// CacheFor is how long an answer is reused (default 1s).
	CacheFor time.Duration
	// Timeout bounds one run of all checks (default 2s).
	Timeout time.Duration
	Now     func() time.Time
}

// New returns a checker of checks.
func New(o Options, checks ...Check) *Checker {
	if o.CacheFor <= 0 {
		o.CacheFor = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Checker{checks: checks, cacheFor: o.CacheFor, timeout: o.Timeout, now: o.Now}
}

// Drain marks the process as shutting down: /readyz answers 503 from now on.
func (c *Checker) Drain() { c.draining.Store(true) }

// Polled reports whether /readyz has been asked since start, which is
// when a drain delay before shutdown is worth waiting.
func (c *Checker) Polled() bool { return c.polled.Load() }

// Ready runs the checks (or reuses an answer younger than CacheFor) and
// returns the failing ones by name.
func (c *Checker) Ready(ctx context.Context) (bool, map[string]string) {
	r := c.result(ctx)
	return r.ok, r.failed
}

func (c *Checker) result(ctx context.Context) *result {
	if r := c.cached.Load(); r != nil && c.now().Sub(r.at) < c.cacheFor {
		return r
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.cached.Load(); r != nil && c.now().Sub(r.at) < c.cacheFor {
		return r // refreshed while we waited
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	failed := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ch := range c.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ch.Func(ctx); err != nil {
				mu.Lock()
				failed[ch.Name] = err.Error()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	status := map[string]string{}
	for _, ch := range c.checks {
		status[ch.Name] = "ok"
		if msg, bad := failed[ch.Name]; bad {
			status[ch.Name] = msg
		}
	}
	body, _ := json.Marshal(map[string]any{"ready": len(failed) == 0, "checks": status})
	r := &result{at: c.now(), ok: len(failed) == 0, body: append(body, '\n'), failed: failed}
	c.cached.Store(r)
	return r
}

// Livez answers 200 while the process serves HTTP.
func Livez() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, "ok\n")
	})
}

var drainingBody = []byte(`{"ready":false,"draining":true}` + "\n")

// Readyz answers 200 when every check passes, 503 with the failing checks
// otherwise or once Drain was called.
func (c *Checker) Readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.polled.Store(true)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if c.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(drainingBody)
			return
		}
		res := c.result(r.Context())
		if !res.ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if r.Method != http.MethodHead {
			_, _ = w.Write(res.body)
		}
	})
}

// Pinger is a store with a cheap reachability check.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Ping is a check calling p.Ping.
func Ping(name string, p Pinger) Check {
	return Check{Name: name, Func: p.Ping}
}

// File is a check that path can be opened and read and, if magic is not
// empty, starts with it: an embedded database whose file was removed,
// replaced or made unreadable is not ready, even though connections
// opened earlier could still read the old file.
func File(name, path string, magic []byte) Check {
	return Check{Name: name, Func: func(context.Context) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if len(magic) == 0 {
			return nil
		}
		buf := make([]byte, len(magic))
		if _, err := io.ReadFull(f, buf); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if string(buf) != string(magic) {
			return fmt.Errorf("%s: not the expected file", path)
		}
		return nil
	}}
}

// Dirs is a check that each path is a directory.
func Dirs(name string, paths ...string) Check {
	return Check{Name: name, Func: func(context.Context) error {
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				return errors.New(p + ": not a directory")
			}
		}
		return nil
	}}
}

// Embedded returns the readiness checks of the embedded shape: the SQLite
// file is there and readable and the store answers; the blob directories
// exist.
func Embedded(meta Pinger, dbPath, blobRoot string) []Check {
	file := File("metadata", dbPath, []byte("SQLite format 3\x00"))
	return []Check{
		{Name: "metadata", Func: func(ctx context.Context) error {
			if err := file.Func(ctx); err != nil {
				return err
			}
			return meta.Ping(ctx)
		}},
		Dirs("blobs", filepath.Join(blobRoot, "blobs"), filepath.Join(blobRoot, "uploads")),
	}
}

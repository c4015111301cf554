package gc_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// slowPass returns collector options under which a pass deleting the
// untagged manifests takes about per for each of them (the Changed hook,
// called after each deletion, sleeps), and the count of deletions.
func slowPass(per time.Duration, hook func(n int64)) (gc.Options, *atomic.Int64) {
	var n atomic.Int64
	return gc.Options{DeleteUntagged: true, Now: later(48 * time.Hour), Batch: 2, Changed: func(string) {
		k := n.Add(1)
		if hook != nil {
			hook(k)
		}
		time.Sleep(per)
	}}, &n
}

// pushUntagged pushes n untagged manifests to lease/app for a pass to
// delete, each with a layer of its own.
func pushUntagged(t *testing.T, e *env, n int) {
	for i := range n {
		e.push(t, "lease/app", "", fmt.Sprintf(`{"m":%d}`, i), fmt.Sprintf("layer %d", i))
	}
}

// waitDeleted waits up to 10s for a pass to have deleted n manifests.
func waitDeleted(deleted *atomic.Int64, n int64) {
	deadline := time.Now().Add(10 * time.Second)
	for deleted.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func runWorker(w *gc.Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	return func() { cancel(); <-done }
}

// TestWorkerRenewsLease: a pass several times longer than the lease keeps
// it: neither another worker nor another holder gets it while the pass
// runs, and the pass finishes.
func TestWorkerRenewsLease(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		const (
			n   = 8
			per = 100 * time.Millisecond
			ttl = 240 * time.Millisecond
		)
		pushUntagged(t, e, n)
		var (
			first, last atomic.Int64 // unix nanos of the pass's first and last deletion
			intruded    atomic.Int64 // holder "c" got the lease during the pass
			bStarted    = make(chan struct{})
		)
		opts, deleted := slowPass(per, func(k int64) {
			now := time.Now().UnixNano()
			if k == 1 {
				first.Store(now)
				close(bStarted)
			}
			last.Store(now)
			if time.Duration(now-first.Load()) > ttl {
				if ok, err := e.store.AcquireLease(context.Background(), gc.LeaseName, "c", time.Minute); err != nil || ok {
					intruded.Add(1)
				}
			}
		})
		a := &gc.Worker{Store: e.store, Collector: gc.New(e.store, e.blobs, opts), GCInterval: time.Hour,
			Holder: "a", Tick: 10 * time.Millisecond, LeaseTTL: ttl}
		stopA := runWorker(a)
		defer stopA()
		<-bStarted
		var bFirst atomic.Int64 // unix nanos of worker b's first work, under the lease
		b := &gc.Worker{Store: e.store, Holder: "b", Tick: 10 * time.Millisecond, LeaseTTL: ttl, UploadMaxAge: 40 * time.Millisecond,
			ExpireUploads: func(ctx context.Context, maxAge time.Duration) (int, error) {
				bFirst.CompareAndSwap(0, time.Now().UnixNano())
				return e.reg.ExpireUploads(ctx, maxAge)
			}}
		stopB := runWorker(b)
		defer stopB()
		waitDeleted(deleted, n)
		stopB()
		if got := deleted.Load(); got != n {
			t.Fatalf("the pass deleted %d of %d manifests", got, n)
		}
		if d := time.Duration(last.Load() - first.Load()); d < 2*ttl {
			t.Fatalf("pass took %s, not longer than the lease %s", d, ttl)
		}
		if k := intruded.Load(); k > 0 {
			t.Fatalf("another holder took the lease %d times during the pass", k)
		}
		if bf := bFirst.Load(); bf != 0 && bf < last.Load() {
			t.Fatalf("worker b worked %s before worker a's pass ended", time.Duration(last.Load()-bf))
		}
	})
}

// TestWorkerStopsOnLostLease: a worker whose lease another holder took
// stops its pass within a renewal period instead of running on beside it.
func TestWorkerStopsOnLostLease(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		const (
			n      = 20
			per    = 50 * time.Millisecond
			ttl    = 300 * time.Millisecond
			stolen = 3
		)
		pushUntagged(t, e, n)
		ctx := context.Background()
		var stealErr atomic.Value
		opts, deleted := slowPass(per, func(k int64) {
			if k != stolen {
				return
			}
			// Another replica takes the lease over (as after an expiry).
			if err := e.store.ReleaseLease(ctx, gc.LeaseName, "a"); err != nil {
				stealErr.Store(err)
			}
			if ok, err := e.store.AcquireLease(ctx, gc.LeaseName, "thief", time.Minute); err != nil || !ok {
				stealErr.Store(err)
			}
		})
		var logs wharftest.LogBuffer
		a := &gc.Worker{Store: e.store, Collector: gc.New(e.store, e.blobs, opts), GCInterval: time.Hour,
			Holder: "a", Tick: 10 * time.Millisecond, LeaseTTL: ttl, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		stop := runWorker(a)
		defer stop()
		waitDeleted(deleted, stolen)
		// Within a renewal period (ttl/3) plus one deletion the pass stops;
		// left alone it would take n*per = 1s more.
		time.Sleep(ttl)
		settled := deleted.Load()
		time.Sleep(ttl)
		stop()
		if v := stealErr.Load(); v != nil {
			t.Fatalf("taking the lease over: %v", v)
		}
		if got := deleted.Load(); got != settled || got >= n || got > stolen+3 {
			t.Fatalf("pass went on after losing the lease: %d deletions at first check, %d later, of %d (lease lost after %d)", settled, got, n, stolen)
		}
		if !strings.Contains(logs.String(), "maintenance lease taken by another replica") {
			t.Fatalf("no warning logged:\n%s", logs.String())
		}
	})
}

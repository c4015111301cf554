// Package gc is Wharf's online garbage collector. It works from database
// references, never by listing storage, and runs while the registry
// serves pushes and pulls.
//
// The model (after GitLab's container registry: review queues fed on every
// change, review delays, re-checks under lock):
//
//   - A blob is garbage when no manifest references it (manifest_blobs)
//     and it was neither created nor touched — an upload finishing or a
//     mount of its digest — for the review delay (default 24h). Links from
//     repositories alone (a blob pushed whose manifest never came) do not
//     keep it past the delay; the delay is what keeps a blob uploaded just
//     before its manifest.
//   - Review queues, not scans: every change that can make garbage queues
//     what it may have freed, in its own transaction (sqlstore): an upload
//     or mount queues its blob, a manifest deletion its blobs, children and
//     referrers, a push by digest or a tag moved or deleted the manifest
//     left untagged. A pass reads only the entries due (their delay has
//     passed), so its cost follows what changed, not how much is stored.
//     An entry says "look at this", never "delete this": each review
//     re-checks, and removes the entry whether or not it collects (a blob
//     found referenced is queued again when it loses that reference).
//   - Mark: for each batch of due entries (Batch, 500) one transaction
//     locks the blobs' rows (skipping rows a writer holds), re-checks that
//     they are still garbage, deletes their database rows and queues their
//     storage keys, and commits. A manifest PUT or mount of the
//     blob that got its lock first is seen (the blob stays); one that
//     waited finds the blob gone and answers as for an unknown blob, so a
//     client re-uploads: no committed manifest ever references a deleted
//     blob.
//   - Sweep: only then, holding the lock an upload of the same digest
//     takes before it writes its object, the storage objects are deleted
//     (SweepConcurrency at a time) and the queue entries dropped. A pass
//     goes through the queue once; an interrupted sweep, or an entry an
//     upload touched meanwhile, is finished by a later pass.
//   - Untagged manifests (gc.untagged: delete) older than untagged_after,
//     which no tag, no index and no live subject keep, are deleted the
//     same way, before blobs; a deleted manifest's blobs are queued with
//     their own age, so they go in the same pass when old enough. With
//     gc.untagged: keep the pass still reads the due manifest entries and
//     drops, in one statement per page, those whose manifest is gone,
//     tagged or kept, so the queue does not grow without bound.
//   - Rescan: a paged scan that queues every unreferenced blob and every
//     untagged, unkept manifest not queued yet (the garbage from before
//     the queues, or written by an older replica during a rolling
//     upgrade). wharf gc --rescan runs it; the Worker runs it when it
//     takes the maintenance lease over and then daily.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
)

// Options tune a collection.
type Options struct {
	// ReviewDelay: how long a blob must have been unreferenced and
	// untouched (default 24h).
	ReviewDelay time.Duration
	// DeleteUntagged turns on deletion of untagged manifests older than
	// UntaggedAfter (default 24h).
	DeleteUntagged bool
	UntaggedAfter  time.Duration
	// DryRun lists what would go and changes nothing: every candidate
	// manifest and blob, including the blobs the listed manifests would
	// free. (Children an index being deleted would free are not listed; a
	// real pass collects those in a later round.)
	DryRun bool
	// Batch is how many candidates are looked up, and how many blobs are
	// marked in one transaction, at once (default 500).
	Batch int
	// SweepBatch is how many queued storage deletions one transaction
	// handles (default 100), SweepConcurrency how many storage deletes run
	// at once (default 8).
	SweepBatch       int
	SweepConcurrency int
	// MaxPerPass bounds the blobs or manifests one pass handles (default 1,000,000).
	MaxPerPass int
	// Changed is told about every repository whose manifests went (to
	// drop this process's caches; other replicas hear through the store).
	Changed func(repo string)
	Now     func() time.Time
	Logger  *slog.Logger
}

// Result is what a pass did (or, dry, would do).
type Result struct {
	Manifests    []ManifestRef
	Blobs        []registry.BlobInfo
	Bytes        int64
	ObjectsGone  int // storage objects deleted
	ReviewsFreed int64
	// Reviewed counts the queue entries the pass looked at (blobs and
	// manifests, a manifest again in each round that reaches it): what a
	// pass costs, which follows what changed since the last one.
	Reviewed int
	Duration time.Duration
}

// Collector runs collection passes.
type Collector struct {
	store Store
	blobs registry.BlobStore
	opts  Options
}

// New returns a collector over a metadata store and its blob store.
func New(store Store, blobs registry.BlobStore, opts Options) *Collector {
	if opts.ReviewDelay <= 0 {
		opts.ReviewDelay = 24 * time.Hour
	}
	if opts.UntaggedAfter <= 0 {
		opts.UntaggedAfter = 24 * time.Hour
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.SweepBatch <= 0 {
		opts.SweepBatch = 100
	}
	if opts.SweepConcurrency <= 0 {
		opts.SweepConcurrency = 8
	}
	if opts.MaxPerPass <= 0 {
		opts.MaxPerPass = 1_000_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Collector{store: store, blobs: blobs, opts: opts}
}

// Rescan queues for review every blob no manifest references and every
// manifest no tag, index or live subject keeps that is not queued yet
// (Store.Rescan), in pages of Batch; with DryRun it only counts
// them. A pass that follows reviews what is old enough.
func (c *Collector) Rescan(ctx context.Context) (Rescanned, error) {
	return c.store.Rescan(ctx, c.opts.Batch, c.opts.DryRun)
}

// Run makes one pass.
func (c *Collector) Run(ctx context.Context) (Result, error) {
	start := c.opts.Now()
	var res Result
	// Untagged manifests are reviewed in both modes: gc.untagged: keep
	// deletes none but drops the entries that need no review (a dry run
	// of keep has nothing to list).
	if c.opts.DeleteUntagged || !c.opts.DryRun {
		if err := c.manifests(ctx, start, &res); err != nil {
			return res, err
		}
	}
	if err := c.blobsPass(ctx, start, &res); err != nil {
		return res, err
	}
	res.Duration = c.opts.Now().Sub(start)
	return res, nil
}

func (c *Collector) manifests(ctx context.Context, now time.Time, res *Result) error {
	before := now.Add(-c.opts.UntaggedAfter)
	// A round pages once through the due entries (a cursor, so entries
	// that stay are not listed again). The entries that do not look like
	// garbage (manifest gone, tagged, or kept by an index or a subject)
	// are settled a page at a time (SettleManifests); with DeleteUntagged
	// each garbage one is collected in a transaction of its own, and with
	// gc.untagged: keep it stays queued. Deleting an index can free its
	// children: go round again until a round frees nothing (each round
	// that goes on deleted something, and MaxPerPass bounds the total).
	room := func() int { return c.opts.MaxPerPass - len(res.Manifests) }
	next := func(after QueuedManifest, n int) ([]QueuedManifest, error) {
		return c.store.UntaggedCandidatesAfter(ctx, before, after, n)
	}
	for room() > 0 {
		n := 0
		err := pageQueue(res, c.opts.Batch, "untagged manifests", room, next, func(cands []QueuedManifest) error {
			if c.opts.DryRun {
				for _, e := range cands {
					if e.Garbage {
						res.Manifests = append(res.Manifests, e.ManifestRef)
					}
				}
				return nil
			}
			var settle []ManifestRef
			for _, e := range cands {
				if !e.Garbage {
					settle = append(settle, e.ManifestRef)
				}
			}
			if len(settle) > 0 {
				if _, err := c.store.SettleManifests(ctx, settle); err != nil {
					return fmt.Errorf("gc: manifest queue: %w", err)
				}
			}
			if !c.opts.DeleteUntagged {
				return nil
			}
			for _, e := range cands {
				if !e.Garbage {
					continue
				}
				ref := e.ManifestRef
				ok, err := c.store.CollectManifest(ctx, ref, before)
				if err != nil {
					return fmt.Errorf("gc: manifest %s@%s: %w", ref.Repo, ref.Digest, err)
				}
				if ok {
					n++
					res.Manifests = append(res.Manifests, ref)
					if c.opts.Changed != nil {
						c.opts.Changed(ref.Repo)
					}
				}
			}
			return nil
		})
		if err != nil || c.opts.DryRun || n == 0 {
			return err
		}
	}
	return nil
}

// pageQueue pages once through a GC queue from its start: next lists up
// to n due entries after the cursor (the last entry of the page before)
// and handle takes each page. It stops at the end of the queue or when
// room (what MaxPerPass still allows) is used up. what names the queue
// in errors.
func pageQueue[T any](res *Result, batch int, what string, room func() int, next func(after T, n int) ([]T, error), handle func([]T) error) error {
	var after T
	for room() > 0 {
		page, err := next(after, min(batch, room()))
		if err != nil {
			return fmt.Errorf("gc: %s: %w", what, err)
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1]
		res.Reviewed += len(page)
		if err := handle(page); err != nil {
			return err
		}
	}
	return nil
}

func (c *Collector) blobsPass(ctx context.Context, now time.Time, res *Result) error {
	before := now.Add(-c.opts.ReviewDelay)
	// Mark: one pass through the due queue entries in queue order, a
	// batch per transaction. The cursor moves past every entry, collected
	// or not (a review removes it or moves it past the cut-off), so the
	// pass ends.
	room := func() int { return c.opts.MaxPerPass - len(res.Blobs) }
	next := func(after QueuedBlob, n int) ([]QueuedBlob, error) {
		return c.store.BlobCandidatesAfter(ctx, before, after, n)
	}
	err := pageQueue(res, c.opts.Batch, "blob candidates", room, next, func(cands []QueuedBlob) error {
		ds := make([]digest.Digest, 0, len(cands))
		for _, e := range cands {
			if c.opts.DryRun {
				if e.Garbage {
					res.Blobs = append(res.Blobs, registry.BlobInfo{Digest: e.Digest})
				}
				continue
			}
			ds = append(ds, e.Digest)
		}
		if c.opts.DryRun {
			return nil
		}
		got, err := c.store.CollectBlobs(ctx, ds, before)
		if err != nil {
			return fmt.Errorf("gc: blobs %s..%s: %w", cands[0].Digest, cands[len(cands)-1].Digest, err)
		}
		for _, info := range got {
			res.Blobs = append(res.Blobs, info)
			res.Bytes += info.Size
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.opts.DryRun {
		// A real pass also collects the blobs of the manifests it deleted
		// first, when no other manifest references them.
		if len(res.Manifests) > 0 && len(res.Blobs) < c.opts.MaxPerPass {
			freed, err := c.store.BlobsFreedBy(ctx, res.Manifests, before)
			if err != nil {
				return fmt.Errorf("gc: blobs of untagged manifests: %w", err)
			}
			for _, d := range freed[:min(len(freed), c.opts.MaxPerPass-len(res.Blobs))] {
				res.Blobs = append(res.Blobs, registry.BlobInfo{Digest: d})
			}
		}
		return nil
	}
	// Sweep every queued object, this pass's and any an earlier pass left,
	// once through the queue in digest order: an entry left queued (an
	// upload touched it since the pass began, or its delete failed) is
	// passed over, and looked at again by the next pass.
	var errs []error
	var cursor digest.Digest
	for len(errs) <= 10 {
		if err := ctx.Err(); err != nil { // cancelled (a lost lease, say): stop now
			errs = append(errs, fmt.Errorf("gc: sweep: %w", err))
			break
		}
		pend, err := c.store.PendingBlobDeletionsAfter(ctx, cursor, c.opts.Batch)
		if err != nil {
			errs = append(errs, fmt.Errorf("gc: pending deletions: %w", err))
			break
		}
		if len(pend) == 0 {
			break
		}
		cursor = pend[len(pend)-1].Digest
		for i := 0; i < len(pend) && len(errs) <= 10 && ctx.Err() == nil; i += c.opts.SweepBatch {
			chunk := pend[i:min(i+c.opts.SweepBatch, len(pend))]
			ds := make([]digest.Digest, len(chunk))
			for j, p := range chunk {
				ds[j] = p.Digest
			}
			n, err := c.store.FinishBlobDeletions(ctx, ds, before, func(key string) error {
				return c.blobs.Delete(ctx, key)
			}, c.opts.SweepConcurrency)
			res.ObjectsGone += n
			if err != nil {
				errs = append(errs, fmt.Errorf("gc: delete objects: %w", err))
			}
		}
		if len(pend) < c.opts.Batch {
			break
		}
	}
	freed, err := c.store.ForgetReviews(ctx, before)
	if err != nil {
		errs = append(errs, fmt.Errorf("gc: forget reviews: %w", err))
	}
	res.ReviewsFreed = freed
	return errors.Join(errs...)
}

// Worker runs background maintenance on one replica at a time: expiring
// abandoned upload sessions and, when GC is on, collection passes and
// rescans. The replicas share a lease in the database; the one holding it
// does the work, and renews the lease while it works, so that a pass
// longer than the lease does not let a second replica start one, and at
// every tick while it holds it, so that the lease stays with one replica
// until that replica stops or stalls.
//
// When GC is on, the worker rescans (Collector.Rescan) each time it takes
// the lease fresh: the first time in this process (a replica start, as in
// a rolling upgrade), or after it had lost it or let it lapse (a takeover);
// and then every RescanEvery while it keeps it.
type Worker struct {
	Store     Store
	Collector *Collector // nil: no GC, only upload expiry
	// GCInterval is the time between collection passes.
	GCInterval time.Duration
	// ExpireUploads aborts sessions idle for longer than UploadMaxAge.
	ExpireUploads func(ctx context.Context, maxAge time.Duration) (int, error)
	UploadMaxAge  time.Duration
	// Holder names this replica in the lease (host:pid, say).
	Holder string
	// Tick is how often the worker checks what is due (default 1 minute,
	// or less when an interval is shorter).
	Tick time.Duration
	// LeaseTTL is how long the lease lasts unless renewed (default
	// max(10 minutes, 2 ticks)): how long a replica that died holding it
	// keeps the others waiting. Work renews it every LeaseTTL/3.
	LeaseTTL time.Duration
	// RescanEvery is how often a holder of the lease rescans when GC is
	// on (default 24h), besides when it takes the lease fresh.
	RescanEvery time.Duration
	Logger      *slog.Logger
}

// LeaseName is the lease background maintenance runs under.
const LeaseName = "maintenance"

// ErrLeaseLost is the cause of the cancelled context of work whose lease
// another replica took (or that could not be renewed before it expired).
var ErrLeaseLost = errors.New("gc: maintenance lease lost")

// Run works until ctx is done.
func (w *Worker) Run(ctx context.Context) {
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	uploadEvery := time.Duration(0)
	if w.ExpireUploads != nil && w.UploadMaxAge > 0 {
		uploadEvery = min(w.UploadMaxAge/4, 10*time.Minute)
	}
	tick := w.Tick
	if tick <= 0 {
		tick = time.Minute
		for _, d := range []time.Duration{uploadEvery, w.GCInterval} {
			if d > 0 && d < tick {
				tick = d
			}
		}
		if w.Collector == nil {
			tick = max(tick, time.Second)
		}
	}
	ttl := w.LeaseTTL
	if ttl <= 0 {
		ttl = max(10*time.Minute, 2*tick)
	}
	rescanEvery := w.RescanEvery
	if rescanEvery <= 0 {
		rescanEvery = 24 * time.Hour
	}
	var (
		lastGC, lastUploads time.Time
		heldUntil           time.Time // the lease is ours until then (zero: not held)
		nextRescan          time.Time
	)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = w.Store.ReleaseLease(context.WithoutCancel(ctx), LeaseName, w.Holder)
			return
		case <-t.C:
		}
		now := time.Now()
		holding := now.Before(heldUntil)
		gcDue := w.Collector != nil && w.GCInterval > 0 && now.Sub(lastGC) >= w.GCInterval
		upDue := uploadEvery > 0 && now.Sub(lastUploads) >= uploadEvery
		if !gcDue && !upDue && !holding {
			continue
		}
		ok, err := w.Store.AcquireLease(ctx, LeaseName, w.Holder, ttl)
		if err != nil {
			log.Warn("maintenance lease", "err", err)
			continue
		}
		if !ok {
			heldUntil = time.Time{}
			continue // another replica does it
		}
		heldUntil = now.Add(ttl)
		// Fresh: not held up to now (this replica's first time, or another
		// replica may have had it since): the queues may lack what a
		// replica older than them wrote, or what a change failed to queue.
		rescanDue := w.Collector != nil && w.GCInterval > 0 && (!holding || !now.Before(nextRescan))
		if !gcDue && !upDue && !rescanDue {
			continue // renewed only
		}
		renewed, lost := w.holdLease(ctx, now, ttl, log, func(ctx context.Context) {
			if upDue {
				lastUploads = now
				n, err := w.ExpireUploads(ctx, w.UploadMaxAge)
				if err != nil {
					log.Warn("expiring uploads", "err", err, "cause", context.Cause(ctx))
				} else if n > 0 {
					log.Info("expired idle uploads", "count", n)
				}
			}
			if rescanDue && ctx.Err() == nil {
				start := time.Now()
				r, err := w.Collector.Rescan(ctx)
				if err != nil {
					// Again at the next pass, not at every tick.
					nextRescan = now.Add(max(w.GCInterval, tick))
					log.Warn("garbage collection rescan", "err", err, "cause", context.Cause(ctx))
				} else {
					nextRescan = now.Add(rescanEvery)
					log.Info("garbage collection rescan", "blobs_queued", r.Blobs, "manifests_queued", r.Manifests,
						"duration", time.Since(start))
				}
			}
			if gcDue && ctx.Err() == nil {
				lastGC = now
				res, err := w.Collector.Run(ctx)
				if err != nil {
					log.Warn("garbage collection", "err", err, "cause", context.Cause(ctx))
				}
				if len(res.Blobs)+len(res.Manifests)+res.ObjectsGone > 0 || err != nil {
					log.Info("garbage collection pass", "manifests", len(res.Manifests), "blobs", len(res.Blobs),
						"bytes", res.Bytes, "objects_deleted", res.ObjectsGone, "reviewed", res.Reviewed, "duration", res.Duration)
				}
			}
		})
		if lost {
			heldUntil = time.Time{}
		} else {
			heldUntil = renewed.Add(ttl)
		}
	}
}

// holdLease runs work under the lease acquired (at acquired, for ttl):
// it renews the lease every ttl/3 while work runs, and cancels work's
// context (cause ErrLeaseLost) as soon as a renewal finds another holder,
// or renewals have failed until the lease may have expired, so that two
// replicas never work at once for longer than a renewal period. It
// returns when the lease was last renewed, and whether it was lost.
func (w *Worker) holdLease(ctx context.Context, acquired time.Time, ttl time.Duration, log *slog.Logger, work func(context.Context)) (renewed time.Time, lost bool) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	renewer := make(chan struct{})
	renewed = acquired
	go func() {
		defer close(renewer)
		t := time.NewTicker(max(ttl/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-wctx.Done():
				return
			case <-t.C:
			}
			start := time.Now()
			ok, err := w.Store.AcquireLease(wctx, LeaseName, w.Holder, ttl)
			switch {
			case err == nil && ok:
				renewed = start
			case err == nil:
				log.Warn("maintenance lease taken by another replica: stopping this replica's pass")
				cancel(ErrLeaseLost)
				return
			case wctx.Err() != nil:
				return
			default:
				log.Warn("renewing maintenance lease", "err", err)
				if time.Since(renewed) >= ttl {
					log.Warn("maintenance lease expired unrenewed: stopping this replica's pass")
					cancel(ErrLeaseLost)
					return
				}
			}
		}
	}()
	work(wctx)
	close(done)
	<-renewer
	return renewed, errors.Is(context.Cause(wctx), ErrLeaseLost)
}

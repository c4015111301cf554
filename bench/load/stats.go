package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one measured phase. JSON field names are stable: the bench
// scripts and "load report" read them.
type Result struct {
	Label      string  `json:"label"`
	Scenario   string  `json:"scenario"`
	Target     string  `json:"target"`
	Clients    int     `json:"clients"`
	Size       int64   `json:"size_bytes,omitempty"`
	Seconds    float64 `json:"seconds"`
	Ops        int64   `json:"ops"` // successful ops
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	Bytes      int64   `json:"bytes"`
	MiBPerSec  float64 `json:"mib_per_sec"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	// Server figures; zero without -pid.
	ServerCPUms   float64 `json:"server_cpu_ms"`
	CPUmsPer1kOps float64 `json:"server_cpu_ms_per_1k_ops"`
	PeakRSSKiB    int64   `json:"server_peak_rss_kib"`
	PeakRSSReset  bool    `json:"server_peak_rss_reset"` // false: VmHWM is the lifetime peak
	StartRSSKiB   int64   `json:"server_start_rss_kib"`
	ClientCPUms   float64 `json:"client_cpu_ms"`
	// Runs is how many runs "load report" folded into this one (medians).
	Runs int `json:"runs,omitempty"`
}

// opFunc performs operation i on behalf of worker w and returns the bytes
// it moved (body bytes read or sent).
type opFunc func(ctx context.Context, w int, i int64) (int64, error)

// loop is what a measured phase runs: op, and optionally kindOf(i) in
// [0, kinds) to keep latencies apart per kind of op (gc-mixed: pull, push).
type loop struct {
	op     opFunc
	kinds  int
	kindOf func(i int64) int
}

type phase struct {
	elapsed  time.Duration
	ops      int64
	errs     int64
	firstErr string
	bytes    int64
	lat      [][]time.Duration // successful ops' latencies, by kind
}

// all is every latency of the phase.
func (p phase) all() []time.Duration { return slices.Concat(p.lat...) }

// run drives op with clients workers until dur has passed or maxOps ops
// have started, whichever is first. Ops in flight at the deadline finish
// (bounded by the per-request timeout) and are counted.
func run(clients int, dur time.Duration, maxOps int64, op opFunc) phase {
	return runLoop(clients, dur, maxOps, loop{op: op})
}

func runLoop(clients int, dur time.Duration, maxOps int64, l loop) phase {
	kinds := max(l.kinds, 1)
	var (
		next, bytes, errs atomic.Int64
		mu                sync.Mutex
		p                 phase
		wg                sync.WaitGroup
	)
	lats := make([][][]time.Duration, clients)
	start := time.Now()
	stop := start.Add(dur)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat := make([][]time.Duration, kinds)
			for time.Now().Before(stop) {
				i := next.Add(1) - 1
				if i >= maxOps {
					break
				}
				t0 := time.Now()
				n, err := l.op(context.Background(), w, i)
				d := time.Since(t0)
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						p.firstErr = err.Error()
						mu.Unlock()
					}
					continue
				}
				bytes.Add(n)
				k := 0
				if l.kindOf != nil {
					k = l.kindOf(i)
				}
				lat[k] = append(lat[k], d)
			}
			lats[w] = lat
		}(w)
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	p.bytes, p.errs = bytes.Load(), errs.Load()
	p.lat = make([][]time.Duration, kinds)
	for _, l := range lats {
		for k := range l {
			p.lat[k] = append(p.lat[k], l[k]...)
		}
	}
	p.ops = int64(len(p.all()))
	return p
}

// measure runs an unmeasured warm-up, then the measured phase, with the
// server's CPU and peak RSS (-pid) and the tool's own CPU around it.
func measure(o *opts, l loop) (Result, phase, error) {
	var r Result
	if o.warmup > 0 {
		w := runLoop(o.clients, o.warmup, o.requests, l)
		if w.ops == 0 && w.errs > 0 {
			return r, w, fmt.Errorf("warm-up failed: %s", w.firstErr)
		}
	}
	var cpu0 int64
	if o.pid != "" {
		var err error
		if cpu0, err = procCPUTicks(o.pid); err != nil {
			return r, phase{}, fmt.Errorf("-pid: %w", err)
		}
		r.StartRSSKiB, _ = procStatusKB(o.pid, "VmRSS")
		r.PeakRSSReset = resetPeakRSS(o.pid) == nil
	}
	self0, _ := procCPUTicks("self")
	p := runLoop(o.clients, o.duration, o.requests, l)
	self1, _ := procCPUTicks("self")
	if o.pid != "" {
		cpu1, err := procCPUTicks(o.pid)
		if err != nil {
			return r, p, fmt.Errorf("-pid (did the server die?): %w", err)
		}
		r.ServerCPUms = float64(cpu1-cpu0) * 1000 / float64(o.clkTck)
		if p.ops > 0 {
			r.CPUmsPer1kOps = r.ServerCPUms * 1000 / float64(p.ops)
		}
		r.PeakRSSKiB, _ = procStatusKB(o.pid, "VmHWM")
	}
	r.Label, r.Target = o.label, o.target
	r.ClientCPUms = float64(self1-self0) * 1000 / float64(o.clkTck)
	r.Clients = o.clients
	r.Seconds = p.elapsed.Seconds()
	r.Ops, r.Errors, r.FirstError, r.Bytes = p.ops, p.errs, p.firstErr, p.bytes
	r.OpsPerSec = float64(p.ops) / r.Seconds
	r.MiBPerSec = float64(p.bytes) / (1 << 20) / r.Seconds
	r.P50ms, r.P99ms, r.MaxMs = latencies(p.all())
	return r, p, nil
}

// latencies sorts d and returns its p50, p99 and maximum in milliseconds
// (zeros for no latencies).
func latencies(d []time.Duration) (p50, p99, maxMs float64) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	return ms(percentile(d, 0.50)), ms(percentile(d, 0.99)), ms(d[len(d)-1])
}

// percentile of sorted latencies, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// parallel runs f(i) for i in [0,n) on k workers; it stops at the first
// error or when ctx ends.
func parallel(ctx context.Context, n, k int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < max(k, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func printResult(w io.Writer, r Result) {
	fmt.Fprintf(w, "%-16s %s  clients=%d", r.Label, r.Target, r.Clients)
	if r.Size > 0 {
		fmt.Fprintf(w, "  size=%s", fmtSize(r.Size))
	}
	fmt.Fprintln(w)
	row := func(k, v string) { fmt.Fprintf(w, "  %-24s %s\n", k, v) }
	row("ops", fmt.Sprintf("%d in %.2fs (errors %d)", r.Ops, r.Seconds, r.Errors))
	if r.FirstError != "" {
		row("first error", r.FirstError)
	}
	row("ops/s", fmt.Sprintf("%.0f", r.OpsPerSec))
	row("MiB/s", fmt.Sprintf("%.1f", r.MiBPerSec))
	row("latency p50 / p99 / max", fmt.Sprintf("%.2f / %.2f / %.2f ms", r.P50ms, r.P99ms, r.MaxMs))
	if r.PeakRSSKiB > 0 {
		row("server CPU", fmt.Sprintf("%.0f ms (%.1f ms per 1k ops)", r.ServerCPUms, r.CPUmsPer1kOps))
		peak := fmt.Sprintf("%.1f MiB (start %.1f MiB)", float64(r.PeakRSSKiB)/1024, float64(r.StartRSSKiB)/1024)
		if !r.PeakRSSReset {
			peak += " [lifetime peak: clear_refs failed]"
		}
		row("server peak RSS", peak)
	}
	row("load tool CPU", fmt.Sprintf("%.0f ms", r.ClientCPUms))
}

// parseSize reads "1048576", "64K", "1M", "1MiB", "2G", "2GiB" (binary units).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
	}
	if mult > 1 {
		t = t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 512K, 1M, 2G)", s)
	}
	return n * mult, nil
}

func fmtSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + " GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

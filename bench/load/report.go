package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// A target compares Wharf's figure (a) with Distribution's (b).
type target struct {
	desc string
	met  func(a, b float64) bool
}

func ratioAtLeast(x float64) *target {
	return &target{fmt.Sprintf("≥ %g×", x), func(a, b float64) bool { return b > 0 && a/b >= x }}
}

func ratioAtMost(x float64) *target {
	return &target{fmt.Sprintf("≤ %g×", x), func(a, b float64) bool { return b > 0 && a/b <= x }}
}

func absBelow(x float64, unit string) *target {
	return &target{fmt.Sprintf("< %g %s", x, unit), func(a, _ float64) bool { return a > 0 && a < x }}
}

// row is one line of the comparison: a metric of the results labelled label.
type row struct {
	label, name, metric string
	get                 func(Result) float64
	format              string
	target              *target
}

var (
	reqPerSec = func(r Result) float64 { return r.OpsPerSec }
	cpuPer1k  = func(r Result) float64 { return r.CPUmsPer1kOps }
	cpuPerOp  = func(r Result) float64 { return r.CPUmsPer1kOps / 1000 }
	mibPerSec = func(r Result) float64 { return r.MiBPerSec }
	peakMiB   = func(r Result) float64 { return float64(r.PeakRSSKiB) / 1024 }
)

var rows = []row{
	{"manifest-get", "manifest GET by tag", "req/s", reqPerSec, "%.0f", ratioAtLeast(5)},
	{"manifest-get", "manifest GET by tag", "server CPU ms / 1k req", cpuPer1k, "%.1f", ratioAtMost(0.1)},
	{"manifest-head", "manifest HEAD by tag", "req/s", reqPerSec, "%.0f", ratioAtLeast(5)},
	{"manifest-head", "manifest HEAD by tag", "server CPU ms / 1k req", cpuPer1k, "%.1f", ratioAtMost(0.1)},
	{"tags-list", "tags/list", "req/s", reqPerSec, "%.0f", ratioAtLeast(5)},
	{"tags-list", "tags/list", "server CPU ms / 1k req", cpuPer1k, "%.1f", ratioAtMost(0.1)},
	{"blob-get", "blob GET", "MiB/s", mibPerSec, "%.0f", ratioAtLeast(3)},
	{"blob-get", "blob GET", "server CPU ms / req", cpuPerOp, "%.3f", nil},
	{"push-small", "push layers", "MiB/s", mibPerSec, "%.0f", ratioAtLeast(2)},
	{"push-small", "push layers", "server CPU ms / push", cpuPerOp, "%.2f", nil},
	{"push-large", "push one blob", "MiB/s", mibPerSec, "%.0f", ratioAtLeast(2)},
	{"push-large", "push one blob", "server peak RSS MiB", peakMiB, "%.1f", nil},
	{"push-256M", "push one blob", "server peak RSS MiB", peakMiB, "%.1f", absBelow(64, "MiB")},
	{"push-2G", "push one blob", "server peak RSS MiB", peakMiB, "%.1f", absBelow(64, "MiB")},
}

func readResults(path string) (map[string]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	all := map[string][]Result{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		all[r.Label] = append(all[r.Label], r)
	}
	out := map[string]Result{}
	for label, rs := range all {
		out[label] = aggregate(rs)
	}
	return out, sc.Err()
}

// aggregate folds repeated runs of one label into one Result: the median
// of each rate, latency and CPU figure (robust to a run disturbed by other
// work on the machine), the highest peak RSS, and the sums of ops and errors.
func aggregate(rs []Result) Result {
	if len(rs) == 1 {
		rs[0].Runs = 1
		return rs[0]
	}
	out := rs[0]
	med := func(get func(Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	out.Runs = len(rs)
	out.OpsPerSec = med(func(r Result) float64 { return r.OpsPerSec })
	out.MiBPerSec = med(func(r Result) float64 { return r.MiBPerSec })
	out.P50ms = med(func(r Result) float64 { return r.P50ms })
	out.P99ms = med(func(r Result) float64 { return r.P99ms })
	out.CPUmsPer1kOps = med(func(r Result) float64 { return r.CPUmsPer1kOps })
	out.ClientCPUms = med(func(r Result) float64 { return r.ClientCPUms })
	out.Ops, out.Errors, out.Seconds, out.ServerCPUms, out.MaxMs = 0, 0, 0, 0, 0
	for _, r := range rs {
		out.Ops += r.Ops
		out.Errors += r.Errors
		out.Seconds += r.Seconds
		out.ServerCPUms += r.ServerCPUms
		out.MaxMs = max(out.MaxMs, r.MaxMs)
		out.PeakRSSKiB = max(out.PeakRSSKiB, r.PeakRSSKiB)
		out.PeakRSSReset = out.PeakRSSReset && r.PeakRSSReset
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
	}
	return out
}

func reportMain(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	a := fs.String("a", "", "JSON-lines results of the measured server (Wharf)")
	b := fs.String("b", "", "JSON-lines results of the baseline (Distribution)")
	aName := fs.String("a-name", "Wharf", "name of -a")
	bName := fs.String("b-name", "Distribution", "name of -b")
	_ = fs.Parse(args)
	if *a == "" || *b == "" {
		return fmt.Errorf("report needs -a and -b")
	}
	ra, err := readResults(*a)
	if err != nil {
		return err
	}
	rb, err := readResults(*b)
	if err != nil {
		return err
	}
	writeReport(os.Stdout, *aName, *bName, ra, rb)
	return nil
}

func scenarioName(rw row, r Result) string {
	s := rw.name
	if r.Size > 0 {
		s += " " + fmtSize(r.Size)
	}
	if rw.label != "push-large" && rw.label != "push-256M" && rw.label != "push-2G" {
		s += fmt.Sprintf(", %d clients", r.Clients)
	}
	return s
}

func writeReport(w io.Writer, aName, bName string, ra, rb map[string]Result) {
	fmt.Fprintf(w, "| Scenario | Metric | %s | %s | %s / %s | Target | Met |\n", aName, bName, aName, bName)
	fmt.Fprintln(w, "|---|---|--:|--:|--:|---|---|")
	for _, rw := range rows {
		x, okA := ra[rw.label]
		y, okB := rb[rw.label]
		if !okA && !okB {
			continue
		}
		ref := x
		if !okA {
			ref = y
		}
		va, vb := rw.get(x), rw.get(y)
		cell := func(ok bool, v float64, r Result) string {
			switch {
			case !ok:
				return "—"
			case r.Ops == 0:
				return "failed"
			}
			s := fmt.Sprintf(rw.format, v)
			if r.Errors > 0 {
				s += fmt.Sprintf(" (%d errors)", r.Errors)
			}
			return s
		}
		ratio := "—"
		if okA && okB && vb > 0 && x.Ops > 0 && y.Ops > 0 {
			ratio = fmtRatio(va / vb)
		}
		tgt, met := "—", ""
		if rw.target != nil {
			tgt = rw.target.desc
			met = "no"
			if okA && x.Ops > 0 && x.Errors == 0 && rw.target.met(va, vb) {
				met = "yes"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", scenarioName(rw, ref), rw.metric,
			cell(okA, va, x), cell(okB, vb, y), ratio, tgt, met)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "<details><summary>All figures</summary>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Server | Run | Clients | Runs | Ops | Errors | Ops/s | MiB/s | p50 ms | p99 ms | Server CPU ms / 1k ops | Server peak RSS MiB | Load tool CPU ms |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range []struct {
		name string
		res  map[string]Result
	}{{aName, ra}, {bName, rb}} {
		for _, label := range []string{"manifest-get", "manifest-head", "tags-list", "blob-get", "push-small", "push-large", "push-256M", "push-2G"} {
			r, ok := s.res[label]
			if !ok {
				continue
			}
			run := label
			if r.Size > 0 {
				run += " (" + fmtSize(r.Size) + ")"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %.0f | %.1f | %.2f | %.2f | %.1f | %.1f | %.0f |\n",
				s.name, run, r.Clients, r.Runs, r.Ops, r.Errors, r.OpsPerSec, r.MiBPerSec, r.P50ms, r.P99ms,
				r.CPUmsPer1kOps, float64(r.PeakRSSKiB)/1024, r.ClientCPUms)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
}

func fmtRatio(r float64) string {
	switch {
	case math.IsInf(r, 0) || math.IsNaN(r):
		return "—"
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2f×", r)
	}
	return fmt.Sprintf("%.3f×", r)
}

// Command load drives an OCI registry with one benchmark scenario and
// reports throughput, latency and the server's own cost: CPU time per
// 1,000 operations (from /proc/<pid>/stat) and peak RSS (VmHWM, reset at
// the start of the measured phase through /proc/<pid>/clear_refs).
//
// Usage:
//
//	load <scenario> -target http://127.0.0.1:5000 [-pid PID] [flags]
//	load report -a wharf.jsonl -b dist.jsonl     (markdown comparison)
//	load freeport                                 (print a free loopback port)
//	load wait -target URL                         (wait for GET /v2/)
//
// Scenarios: setup, manifest-get, manifest-head, tags-list, blob-get,
// push-small, push-large. Run "load <scenario> -h" for flags.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var scenarios = []string{"setup", "manifest-get", "manifest-head", "tags-list", "blob-get", "push-small", "push-large", "batch", "nplus1"}

func usage() {
	fmt.Fprintf(os.Stderr, `usage: load <command> [flags]

commands:
  setup          push a test image (-layers N of -layer-size, -tags T tags)
  manifest-get   GET /v2/<repo>/manifests/<tag>
  manifest-head  HEAD /v2/<repo>/manifests/<tag>
  tags-list      GET /v2/<repo>/tags/list
  blob-get       GET the image's layers (full bodies), round robin
  push-small     each op pushes a fresh random blob of -size (POST + monolithic PUT)
  push-large     one blob of -size streamed from a generator (POST, PATCH(es), PUT)
  report         compare two JSON-lines result files as markdown
  freeport       print a free TCP port on 127.0.0.1
  wait           wait until GET /v2/ answers 200

run "load <command> -h" for the flags of a command
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch {
	case cmd == "report":
		err = reportMain(args)
	case cmd == "freeport":
		err = freePort()
	case cmd == "wait":
		err = waitMain(args)
	case slices.Contains(scenarios, cmd):
		err = scenarioMain(cmd, args)
	case cmd == "-h" || cmd == "--help" || cmd == "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "load: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func freePort() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

func waitMain(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	target := fs.String("target", "http://127.0.0.1:5000", "registry base URL")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	_ = fs.Parse(args)
	c, err := newRegClient(*target, "x", 1, 5*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return c.ping(ctx)
}

// opts are the flags of the scenarios.
type opts struct {
	target, repo, tag, pid, label string
	user, password                string
	clients                       int
	duration, warmup, timeout     time.Duration
	requests                      int64
	size, chunk, layerSize        int64
	layers, tags                  int
	clkTck                        int64
	jsonOut                       bool
}

// Result is one measured phase. JSON field names are stable: run.sh and
// "load report" read them.
type Result struct {
	Label      string  `json:"label"`
	Scenario   string  `json:"scenario"`
	Target     string  `json:"target"`
	Clients    int     `json:"clients"`
	Size       int64   `json:"size_bytes,omitempty"`
	Seconds    float64 `json:"seconds"`
	Ops        int64   `json:"ops"`
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

func scenarioMain(name string, args []string) error {
	var o opts
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&o.target, "target", "http://127.0.0.1:5000", "registry base URL")
	fs.StringVar(&o.repo, "repo", "bench/app", "repository")
	fs.StringVar(&o.tag, "tag", "latest", "tag of the test image")
	fs.StringVar(&o.pid, "pid", "", "server PID: measure its CPU time and peak RSS")
	fs.StringVar(&o.label, "label", name, "label of the result (for report)")
	fs.StringVar(&o.user, "user", "", "log in as this user (Basic, or the token dance for a Bearer challenge)")
	fs.StringVar(&o.password, "password", "", "password for -user")
	fs.IntVar(&o.clients, "clients", 16, "concurrent clients")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured phase length (always bounded)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before the phase (0: none)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "per-request timeout (push-large: 10m unless set)")
	fs.Int64Var(&o.requests, "requests", 1_000_000, "stop after this many ops (always bounded)")
	sizeFlag := fs.String("size", "", "blob size: push-small 1MiB, push-large 1GiB (units K, M, G = KiB, MiB, GiB)")
	chunkFlag := fs.String("chunk", "0", "push-large PATCH size (0: one streamed PATCH)")
	layerSizeFlag := fs.String("layer-size", "1M", "setup: size of each layer")
	fs.IntVar(&o.layers, "layers", 4, "setup: number of layers")
	fs.IntVar(&o.tags, "tags", 10, "setup: number of tags (the -tag, then t1, t2, ...)")
	fs.Int64Var(&o.clkTck, "clk-tck", 100, "clock ticks per second (getconf CLK_TCK)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON line on stdout (and the human summary on stderr)")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	defSize := "1M"
	if name == "push-large" {
		defSize = "1G"
		timeoutSet := false
		fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
		if !timeoutSet {
			o.timeout = 10 * time.Minute
		}
	}
	if *sizeFlag == "" {
		*sizeFlag = defSize
	}
	if o.size, err = parseSize(*sizeFlag); err != nil {
		return err
	}
	if o.chunk, err = parseSize(*chunkFlag); err != nil {
		return err
	}
	if o.layerSize, err = parseSize(*layerSizeFlag); err != nil {
		return err
	}
	if o.clients < 1 || o.duration <= 0 || o.requests < 1 {
		return errors.New("-clients, -duration and -requests must be positive")
	}
	c, err := newRegClient(o.target, o.repo, o.clients, o.timeout)
	if err != nil {
		return err
	}
	if o.user != "" {
		if err := c.withAuth(context.Background(), o.user, o.password); err != nil {
			return fmt.Errorf("login: %w", err)
		}
	}
	if name == "setup" {
		return setup(c, o)
	}
	op, err := prepare(name, c, o)
	if err != nil {
		return err
	}
	if name == "push-large" {
		o.clients, o.requests, o.warmup = 1, 1, 0
	}
	res, err := measure(o, op)
	if err != nil {
		return err
	}
	res.Label, res.Scenario, res.Target = o.label, name, o.target
	if name == "blob-get" {
		res.Size = o.layerSize
	} else if strings.HasPrefix(name, "push") {
		res.Size = o.size
	}
	if o.jsonOut {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
		printResult(os.Stderr, res) // progress for whoever watches
	} else {
		printResult(os.Stdout, res)
	}
	if res.Ops == 0 {
		return fmt.Errorf("no successful operations; first error: %s", res.FirstError)
	}
	return nil
}

// opFunc performs operation i on behalf of worker w and returns the bytes
// it moved (body bytes read or sent).
type opFunc func(ctx context.Context, w int, i int64) (int64, error)

func prepare(name string, c *regClient, o opts) (opFunc, error) {
	ctx := context.Background()
	mpath := c.url("/v2/" + c.repo + "/manifests/" + o.tag)
	switch name {
	case "manifest-get", "manifest-head":
		method := http.MethodGet
		if name == "manifest-head" {
			method = http.MethodHead
		}
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			req, _ := http.NewRequestWithContext(ctx, method, mpath, nil)
			req.Header.Set("Accept", manifestAccept)
			n, _, err := c.do(req, http.StatusOK)
			return n, err
		}, nil
	case "tags-list":
		tpath := c.url("/v2/" + c.repo + "/tags/list")
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tpath, nil)
			n, _, err := c.do(req, http.StatusOK)
			return n, err
		}, nil
	case "blob-get":
		m, err := c.getManifest(ctx, o.tag)
		if err != nil {
			return nil, fmt.Errorf("blob-get needs the setup image: %w", err)
		}
		if len(m.Layers) == 0 {
			return nil, errors.New("the test image has no layers")
		}
		return func(ctx context.Context, _ int, i int64) (int64, error) {
			l := m.Layers[int(i)%len(m.Layers)]
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"+c.repo+"/blobs/"+l.Digest), nil)
			n, _, err := c.do(req, http.StatusOK)
			if err == nil && n != l.Size {
				err = fmt.Errorf("blob %s: read %d bytes, want %d", l.Digest, n, l.Size)
			}
			return n, err
		}, nil
	case "batch":
		// One image's signed URLs in one request (the batch endpoint).
		bpath := mpath + "/blobs?expiry=3600"
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bpath, nil)
			n, _, err := c.do(req, http.StatusOK)
			return n, err
		}, nil
	case "nplus1":
		// The same URLs the standard way: the manifest, then every blob
		// answered with a 307 to its signed URL (the server runs with
		// redirects on; the redirect is not followed). One op = one image.
		m, err := c.getManifest(ctx, o.tag)
		if err != nil {
			return nil, fmt.Errorf("nplus1 needs the setup image: %w", err)
		}
		blobs := append([]descriptor{m.Config}, m.Layers...)
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, mpath, nil)
			req.Header.Set("Accept", manifestAccept)
			total, _, err := c.do(req, http.StatusOK)
			if err != nil {
				return total, err
			}
			for _, b := range blobs {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"+c.repo+"/blobs/"+b.Digest), nil)
				n, _, err := c.do(req, http.StatusTemporaryRedirect)
				total += n
				if err != nil {
					return total, err
				}
			}
			return total, nil
		}, nil
	case "push-small":
		base := randomSeed()
		bufs := make([][]byte, o.clients)
		for i := range bufs {
			bufs[i] = make([]byte, o.size)
		}
		return func(ctx context.Context, w int, i int64) (int64, error) {
			b := bufs[w]
			r := wyrand{s: base + uint64(i)*0x9e3779b97f4a7c15}
			r.fill(b)
			return int64(len(b)), c.pushBlob(ctx, b, sha256Digest(b))
		}, nil
	case "push-large":
		seed := randomSeed()
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			_, err := c.pushStream(ctx, seed, o.size, o.chunk)
			return o.size, err
		}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

func randomSeed() uint64 {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// setup pushes the test image: a config blob, o.layers layers of
// o.layerSize deterministic bytes, one manifest tagged o.tag and t1..tN-1.
func setup(c *regClient, o opts) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.ping(ctx); err != nil {
		return err
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)
	m := manifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sha256Digest(cfg), Size: int64(len(cfg))}}
	if err := c.pushBlob(ctx, cfg, m.Config.Digest); err != nil {
		return fmt.Errorf("config blob: %w", err)
	}
	for i := 0; i < o.layers; i++ {
		b := genBlob(uint64(i+1)*0x9e3779b97f4a7c15, int(o.layerSize))
		d := sha256Digest(b)
		if err := c.pushBlob(ctx, b, d); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: d, Size: int64(len(b))})
	}
	body, _ := json.Marshal(m)
	for t := 0; t < max(o.tags, 1); t++ {
		ref := o.tag
		if t > 0 {
			ref = "t" + strconv.Itoa(t)
		}
		if err := c.putManifest(ctx, ref, body); err != nil {
			return fmt.Errorf("manifest %s: %w", ref, err)
		}
	}
	fmt.Fprintf(os.Stderr, "setup: %s/%s:%s with %d layers of %d bytes, %d tags, manifest %s\n",
		o.target, o.repo, o.tag, o.layers, o.layerSize, max(o.tags, 1), sha256Digest(body))
	return nil
}

type phase struct {
	elapsed  time.Duration
	ops      int64
	errs     int64
	firstErr string
	bytes    int64
	lat      []time.Duration
}

// run drives op with o.clients workers until dur has passed or maxOps ops
// have started, whichever is first. Ops in flight at the deadline finish
// (bounded by the per-request timeout) and are counted.
func run(clients int, dur time.Duration, maxOps int64, op opFunc) phase {
	var (
		next, bytes, errs atomic.Int64
		mu                sync.Mutex
		p                 phase
		wg                sync.WaitGroup
	)
	lats := make([][]time.Duration, clients)
	start := time.Now()
	stop := start.Add(dur)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			for time.Now().Before(stop) {
				i := next.Add(1) - 1
				if i >= maxOps {
					break
				}
				t0 := time.Now()
				n, err := op(context.Background(), w, i)
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
				lat = append(lat, d)
			}
			lats[w] = lat
		}(w)
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	p.bytes, p.errs = bytes.Load(), errs.Load()
	for _, l := range lats {
		p.lat = append(p.lat, l...)
	}
	p.ops = int64(len(p.lat))
	return p
}

func measure(o opts, op opFunc) (Result, error) {
	var r Result
	if o.warmup > 0 {
		w := run(o.clients, o.warmup, o.requests, op)
		if w.ops == 0 && w.errs > 0 {
			return r, fmt.Errorf("warm-up failed: %s", w.firstErr)
		}
	}
	var cpu0 int64
	if o.pid != "" {
		var err error
		if cpu0, err = procCPUTicks(o.pid); err != nil {
			return r, fmt.Errorf("-pid: %w", err)
		}
		r.StartRSSKiB, _ = procStatusKB(o.pid, "VmRSS")
		r.PeakRSSReset = resetPeakRSS(o.pid) == nil
	}
	self0, _ := procCPUTicks("self")
	p := run(o.clients, o.duration, o.requests, op)
	self1, _ := procCPUTicks("self")
	if o.pid != "" {
		cpu1, err := procCPUTicks(o.pid)
		if err != nil {
			return r, fmt.Errorf("-pid (did the server die?): %w", err)
		}
		r.ServerCPUms = float64(cpu1-cpu0) * 1000 / float64(o.clkTck)
		if p.ops > 0 {
			r.CPUmsPer1kOps = r.ServerCPUms * 1000 / float64(p.ops)
		}
		r.PeakRSSKiB, _ = procStatusKB(o.pid, "VmHWM")
	}
	r.ClientCPUms = float64(self1-self0) * 1000 / float64(o.clkTck)
	r.Clients = o.clients
	r.Seconds = p.elapsed.Seconds()
	r.Ops, r.Errors, r.FirstError, r.Bytes = p.ops, p.errs, p.firstErr, p.bytes
	r.OpsPerSec = float64(p.ops) / r.Seconds
	r.MiBPerSec = float64(p.bytes) / (1 << 20) / r.Seconds
	if len(p.lat) > 0 {
		slices.Sort(p.lat)
		r.P50ms = ms(percentile(p.lat, 0.50))
		r.P99ms = ms(percentile(p.lat, 0.99))
		r.MaxMs = ms(p.lat[len(p.lat)-1])
	}
	return r, nil
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

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

package main

// The s3 command measures Wharf on the S3 blob store against a real MinIO
// (started here, on loopback, in a temporary directory), one Wharf process
// per check:
//
//   - rss:    peak registry RSS while pushing one blob in 1 MiB chunks
//     (256 MiB and 2 GiB): flat, and under 150 MiB;
//   - commit: latency of the final PUT (?digest=) of a 1 GiB and a 1 MiB
//     upload: the 1 GiB one within 2x the 1 MiB one (no copy);
//   - pull:   registry CPU per pull of a 15-layer image with redirects on
//     (307 to pre-signed MinIO URLs) and off (streamed through the
//     registry): on must cost >= 20x less;
//   - push:   MiB/s of one blob pushed through Wharf into MinIO vs the AWS
//     SDK's upload manager (feature/s3/transfermanager) writing the same
//     amount straight to MinIO: >= 80%.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wharf-registry/wharf/internal/freeport"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/proc"
)

const mib = 1 << 20

type s3Opts struct {
	wharfBin, only, rssSizes, images, out string
	pullsOn, pullsOff, pullJobs           int
	pushMiB, commitMiB, partSize          int64
	keep                                  bool
}

func defaultS3Opts() s3Opts {
	return s3Opts{only: "rss,commit,pull,push", rssSizes: "256,2048", images: "typical,small",
		pullsOn: 60, pullsOff: 15, pullJobs: 4, pushMiB: 1024, commitMiB: 1024, partSize: 8 * mib}
}

func (s *s3Opts) register(fs *flag.FlagSet) {
	fs.StringVar(&s.wharfBin, "wharf", s.wharfBin, "wharf binary (required)")
	fs.StringVar(&s.only, "only", s.only, "checks to run")
	fs.StringVar(&s.rssSizes, "rss-sizes", s.rssSizes, "blob sizes in MiB for the RSS check")
	fs.IntVar(&s.pullsOn, "pulls-on", s.pullsOn, "pulls measured with redirects on")
	fs.IntVar(&s.pullsOff, "pulls-off", s.pullsOff, "pulls measured with redirects off")
	fs.Int64Var(&s.pushMiB, "push-mib", s.pushMiB, "blob size in MiB for the throughput comparison")
	fs.Int64Var(&s.commitMiB, "commit-mib", s.commitMiB, "the large upload of the commit check, in MiB (smaller only for a smoke run)")
	fs.IntVar(&s.pullJobs, "pull-jobs", s.pullJobs, "blobs a pull downloads in parallel (crane: 4, containerd: 3)")
	fs.StringVar(&s.images, "image", s.images, "pull images: typical (15 layers, 120 MiB, sized like a common application image), small (15 x 2 MiB)")
	fs.Int64Var(&s.partSize, "part-size", s.partSize, "storage.s3.part_size")
	fs.StringVar(&s.out, "out", "", "write the figures as JSON here")
	fs.BoolVar(&s.keep, "keep", false, "keep the temporary directory")
}

// s3Bench is one s3 run: its MinIO, options and figures.
type s3Bench struct {
	o   *opts
	m   *miniotest.Server
	dir string
	res map[string]float64
}

func s3Main(ctx context.Context, o *opts) error {
	if o.s3.wharfBin == "" {
		return errors.New("-wharf is required")
	}
	dir, err := os.MkdirTemp("", "wharf-s3load-")
	if err != nil {
		return err
	}
	if !o.s3.keep {
		defer os.RemoveAll(dir)
	}
	bin, err := miniotest.Binary()
	if err != nil {
		return err
	}
	m, err := miniotest.Run(ctx, bin, filepath.Join(dir, "minio"))
	if err != nil {
		return err
	}
	defer m.Stop()
	log.Printf("MinIO at %s (pid %d)", m.Endpoint, m.PID())
	b := &s3Bench{o: o, m: m, dir: dir, res: map[string]float64{}}
	checks := map[string]func(context.Context) error{"rss": b.rss, "commit": b.commit, "pull": b.pull, "push": b.push}
	for _, name := range []string{"rss", "commit", "pull", "push"} {
		if !slices.Contains(splitList(o.s3.only), name) {
			continue
		}
		log.Printf("---- %s", name)
		if err := checks[name](ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	b.report(os.Stdout)
	if o.s3.out != "" {
		j, _ := json.MarshalIndent(b.res, "", "  ")
		return os.WriteFile(o.s3.out, j, 0o644)
	}
	return nil
}

// report prints every figure, then PASS or FAIL per target (s3.sh fails
// on a FAIL line).
func (b *s3Bench) report(w io.Writer) {
	res := b.res
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintln(w, "\nfigure                                   value")
	for _, k := range keys {
		fmt.Fprintf(w, "%-40s %10.3f\n", k, res[k])
	}
	fmt.Fprintln(w)
	check := func(ok bool, format string, a ...any) {
		word := "PASS"
		if !ok {
			word = "FAIL"
		}
		fmt.Fprintf(w, "%s  %s\n", word, fmt.Sprintf(format, a...))
	}
	if v, ok := res["rss_peak_mib_2048"]; ok {
		check(v < 150, "peak RSS pushing 2 GiB in 1 MiB chunks: %.1f MiB (< 150)", v)
		if s, ok := res["rss_peak_mib_256"]; ok {
			check(v < s*1.25+10, "RSS flat: 256 MiB -> %.1f MiB, 2 GiB -> %.1f MiB", s, v)
		}
	}
	if v, ok := res["commit_ratio_1g_over_1m"]; ok {
		check(v <= 2, "final PUT 1 GiB / 1 MiB = %.2f (<= 2)", v)
	}
	if v, ok := res["pull_cpu_ratio_off_over_on_typical"]; ok {
		check(v >= 20, "registry CPU per pull of a 15-layer 120 MiB image, redirects off / on = %.1f (>= 20)", v)
	}
	if v, ok := res["pull_cpu_ratio_off_over_on_small"]; ok {
		fmt.Fprintf(w, "info  registry CPU per pull of a 15-layer 30 MiB image, redirects off / on = %.1f (per-request cost dominates)\n", v)
	}
	if v, ok := res["push_ratio_wharf_over_sdk"]; ok {
		check(v >= 0.8, "push throughput Wharf / SDK transfer manager = %.2f (>= 0.80)", v)
	}
}

// wharfProc is one registry process on the S3 store, with a client on it.
type wharfProc struct {
	c    *regClient
	cmd  *exec.Cmd
	pid  string
	done chan struct{}
}

func (b *s3Bench) startWharf(ctx context.Context, name string, redirect bool) (*wharfProc, error) {
	data := filepath.Join(b.dir, name)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c, err := newRegClient("http://"+addr, "bench/"+name, 64, 30*time.Minute)
	if err != nil {
		return nil, err
	}
	c.followRedirects() // a pull follows 307s to the signed URLs like any client
	m := b.m
	cmd := exec.Command(b.o.s3.wharfBin, "serve")
	cmd.Env = append(os.Environ(),
		"WHARF_ADDR="+addr, "WHARF_DATA_DIR="+data, "WHARF_LOG_LEVEL=warn", "WHARF_LOG_FORMAT=json",
		"WHARF_STORAGE_DRIVER=s3", "WHARF_STORAGE_S3_ENDPOINT="+m.Endpoint, "WHARF_STORAGE_S3_REGION="+miniotest.Region,
		"WHARF_STORAGE_S3_BUCKET="+m.Bucket, "WHARF_STORAGE_S3_PREFIX="+name+"/",
		"WHARF_STORAGE_S3_ACCESS_KEY="+m.AccessKey, "WHARF_STORAGE_S3_SECRET_KEY="+m.SecretKey,
		"WHARF_STORAGE_S3_PATH_STYLE=true", "WHARF_STORAGE_S3_PART_SIZE="+strconv.FormatInt(b.o.s3.partSize, 10),
		"WHARF_SIGNING_SIGNER=s3", "WHARF_REDIRECT_ENABLED="+strconv.FormatBool(redirect))
	logf, err := os.Create(filepath.Join(b.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	w := &wharfProc{c: c, cmd: cmd, pid: strconv.Itoa(cmd.Process.Pid), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(w.done) }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := c.ping(wctx); err != nil {
		w.stop()
		return nil, fmt.Errorf("wharf did not start (see %s.log): %w", data, err)
	}
	return w, nil
}

func (w *wharfProc) stop() {
	proc.Stop(w.cmd.Process, w.done, 20*time.Second)
}

func (w *wharfProc) statusKB(field string) int64 {
	v, _ := procStatusKB(w.pid, field)
	return v
}

func (b *s3Bench) rss(ctx context.Context) error {
	w, err := b.startWharf(ctx, "rss", false)
	if err != nil {
		return err
	}
	defer w.stop()
	b.res["rss_idle_mib"] = float64(w.statusKB("VmRSS")) / 1024
	for i, s := range splitList(b.o.s3.rssSizes) {
		sz, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("-rss-sizes: %w", err)
		}
		_ = resetPeakRSS(w.pid)
		var peak atomic.Int64
		stop, sampled := make(chan struct{}), make(chan struct{})
		go func() { // VmHWM too, in case the reset failed: the larger wins
			defer close(sampled)
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				peak.Store(max(peak.Load(), w.statusKB("VmRSS")))
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		t0 := time.Now()
		_, _, err = w.c.pushStream(ctx, uint64(100+i), sz*mib, mib, "")
		close(stop)
		<-sampled
		if err != nil {
			return err
		}
		hwm := max(peak.Load(), w.statusKB("VmHWM"))
		b.res["rss_peak_mib_"+s] = float64(hwm) / 1024
		b.res["rss_push_mibps_"+s] = float64(sz) / time.Since(t0).Seconds()
		log.Printf("%s MiB in 1 MiB chunks: peak RSS %.1f MiB, %.1f MiB/s", s, float64(hwm)/1024, b.res["rss_push_mibps_"+s])
	}
	return nil
}

func (b *s3Bench) commit(ctx context.Context) error {
	w, err := b.startWharf(ctx, "commit", false)
	if err != nil {
		return err
	}
	defer w.stop()
	// The final PUT of 5 pushes of 1 MiB, then of 3 of 1 GiB (-commit-mib)
	// plus a tail in 64 MiB chunks; medians.
	var small, large []time.Duration
	for i := range 8 {
		size, chunk, into := int64(mib), int64(mib), &small
		if i >= 5 {
			size, chunk, into = b.o.s3.commitMiB*mib+12345, 64*mib, &large
		}
		_, put, err := w.c.pushStream(ctx, uint64(200+i), size, chunk, "")
		if err != nil {
			return err
		}
		*into = append(*into, put)
	}
	slices.Sort(small)
	slices.Sort(large)
	s, l := percentile(small, 0.5), percentile(large, 0.5)
	b.res["commit_ms_1m"] = ms(s)
	b.res["commit_ms_1g"] = ms(l)
	b.res["commit_ratio_1g_over_1m"] = l.Seconds() / s.Seconds()
	log.Printf("final PUT: 1 MiB %v (median of 5), %d MiB %v (median of 3)", s, b.o.s3.commitMiB, l)
	return nil
}

// layerSizes are the images the pull check uses, 15 layers each.
var layerSizes = map[string][]int64{
	// a base OS layer, a runtime, dependencies, then small app layers
	"typical": {48 * mib, 24 * mib, 12 * mib, 8 * mib, 6 * mib, 5 * mib, 4 * mib, 3 * mib, 3 * mib, 2 * mib, 2 * mib, mib, mib, mib / 2, mib / 4},
	"small":   {2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib},
}

// pushImage pushes a 15-layer image tagged v1.
func pushImage(ctx context.Context, c *regClient, sizes []int64) error {
	var ls []descriptor
	for i, size := range sizes {
		d, _, err := c.pushStream(ctx, uint64(1000+i), size, size, "")
		if err != nil {
			return err
		}
		ls = append(ls, descriptor{mtLayer, d, size})
	}
	if _, err := c.postBlob(ctx, configJSON); err != nil {
		return err
	}
	return c.putManifest(ctx, "v1", manifestBytes(ls...))
}

// pullOnce fetches the manifest and every blob, -pull-jobs at a time, each
// checked against its digest; it returns the bytes read.
func (b *s3Bench) pullOnce(ctx context.Context, c *regClient) (int64, error) {
	m, err := c.getManifest(ctx, "v1")
	if err != nil {
		return 0, err
	}
	ds := append([]descriptor{m.Config}, m.Layers...)
	var total atomic.Int64
	err = parallel(ctx, len(ds), b.o.s3.pullJobs, func(ctx context.Context, i int) error {
		n, err := c.getBlob(ctx, ds[i].Digest)
		total.Add(n)
		return err
	})
	return total.Load(), err
}

func (b *s3Bench) pull(ctx context.Context) error {
	for _, kind := range splitList(b.o.s3.images) {
		sizes, ok := layerSizes[kind]
		if !ok {
			return fmt.Errorf("unknown image %q", kind)
		}
		off, err := b.pullCPU(ctx, "off_"+kind, sizes, false, b.o.s3.pullsOff)
		if err != nil {
			return err
		}
		on, err := b.pullCPU(ctx, "on_"+kind, sizes, true, b.o.s3.pullsOn)
		if err != nil {
			return err
		}
		if on <= 0 {
			on = 1000.0 / float64(b.o.clkTck) / float64(b.o.s3.pullsOn) // below one tick in the whole run
			log.Printf("redirects on used less than one clock tick; bounding with 1 tick")
		}
		b.res["pull_cpu_ratio_off_over_on_"+kind] = off / on
	}
	return nil
}

// pullCPU is the registry's CPU ms per pull of the image, over pulls pulls
// after one that warms the caches.
func (b *s3Bench) pullCPU(ctx context.Context, name string, sizes []int64, redirect bool, pulls int) (float64, error) {
	w, err := b.startWharf(ctx, name, redirect)
	if err != nil {
		return 0, err
	}
	defer w.stop()
	if err := pushImage(ctx, w.c, sizes); err != nil {
		return 0, err
	}
	if _, err := b.pullOnce(ctx, w.c); err != nil {
		return 0, err
	}
	u0, s0, err := procUserSys(w.pid)
	if err != nil {
		return 0, err
	}
	n0, t0 := procSchedNanos(w.pid), time.Now()
	var bytes int64
	for range pulls {
		n, err := b.pullOnce(ctx, w.c)
		if err != nil {
			return 0, err
		}
		bytes += n
	}
	el := time.Since(t0)
	u1, s1, err := procUserSys(w.pid)
	if err != nil {
		return 0, err
	}
	cpu := float64(u1+s1-u0-s0) / float64(b.o.clkTck) * 1000 / float64(pulls)
	exact := float64(procSchedNanos(w.pid)-n0) / 1e6 / float64(pulls)
	b.res["pull_cpu_ms_per_image_schedstat_"+name] = exact
	b.res["pull_cpu_ms_per_image_"+name] = cpu
	b.res["pull_mibps_"+name] = float64(bytes) / mib / el.Seconds()
	log.Printf("redirect=%v: schedstat CPU %.2f ms per pull (user %d ticks, system %d ticks in all)", redirect, exact, u1-u0, s1-s0)
	log.Printf("redirect=%v: %d pulls of %.1f MiB in %v, registry CPU %.2f ms per pull", redirect, pulls, float64(bytes)/float64(pulls)/mib, el.Round(time.Millisecond), cpu)
	return cpu, nil
}

func (b *s3Bench) push(ctx context.Context) error {
	w, err := b.startWharf(ctx, "push", false)
	if err != nil {
		return err
	}
	defer w.stop()
	size := b.o.s3.pushMiB * mib
	m := b.m
	c := s3.New(s3.Options{
		Region: miniotest.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
	up := transfermanager.New(c) // the SDK's upload manager with its defaults
	var best struct{ wharf, sdk float64 }
	// Best of three, interleaved: the machine may be shared.
	for i := range 3 {
		// Wharf: POST, one streamed PATCH of the whole blob, PUT ?digest=;
		// the digest is known up front so that neither side hashes.
		d := streamDigest(uint64(500+i), size)
		t0 := time.Now()
		if _, _, err := w.c.pushStream(ctx, uint64(500+i), size, size, d); err != nil {
			return err
		}
		wr := float64(size) / mib / time.Since(t0).Seconds()
		t0 = time.Now()
		_, err := up.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &m.Bucket,
			Key: aws.String(fmt.Sprintf("sdk/blob-%d", i)), Body: io.NopCloser(newRawStream(uint64(600+i), size))})
		if err != nil {
			return err
		}
		sr := float64(size) / mib / time.Since(t0).Seconds()
		log.Printf("push %d MiB: Wharf %.1f MiB/s, SDK transfer manager %.1f MiB/s", b.o.s3.pushMiB, wr, sr)
		best.wharf, best.sdk = max(best.wharf, wr), max(best.sdk, sr)
	}
	b.res["push_mibps_wharf"] = best.wharf
	b.res["push_mibps_sdk_manager"] = best.sdk
	b.res["push_ratio_wharf_over_sdk"] = best.wharf / best.sdk
	return nil
}

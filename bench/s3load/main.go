// Command s3load measures Wharf on the S3 blob store against a real MinIO
// (started here, on loopback, with a temporary directory):
//
//   - rss:      peak registry RSS while pushing one blob in 1 MiB chunks
//     (256 MiB and 2 GiB): flat, and under 150 MiB;
//   - commit:   latency of the final PUT (?digest=) of a 1 GiB and a 1 MiB
//     upload: the 1 GiB one within 2x the 1 MiB one (no copy);
//   - pull:     registry CPU (utime+stime from /proc) per pull of a 15-layer
//     image with redirects on (307 to pre-signed MinIO URLs) and off
//     (streamed through the registry): on must cost >= 20x less;
//   - push:     MiB/s of one blob pushed through Wharf into MinIO vs the
//     AWS SDK's upload manager (feature/s3/transfermanager, which supersedes feature/s3/manager) writing the same bytes straight to MinIO:
//     >= 80%.
//
// Usage: go run ./bench/s3load -wharf /path/to/wharf (bench/s3.sh builds it).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wharf-registry/wharf/internal/miniotest"
)

const mib = 1 << 20

var (
	wharfBin  = flag.String("wharf", "", "wharf binary (required)")
	only      = flag.String("only", "rss,commit,pull,push", "scenarios to run")
	rssSizes  = flag.String("rss-sizes", "256,2048", "blob sizes in MiB for the RSS check")
	pullsOn   = flag.Int("pulls-on", 60, "pulls measured with redirects on")
	pullsOff  = flag.Int("pulls-off", 15, "pulls measured with redirects off")
	pushSize  = flag.Int64("push-mib", 1024, "blob size in MiB for the throughput comparison")
	pullJobs  = flag.Int("pull-jobs", 4, "blobs a pull downloads in parallel (crane: 4, containerd: 3)")
	imageKind = flag.String("image", "typical,small", "pull images: typical (15 layers, 120 MiB, sized like a common application image), small (15 x 2 MiB)")
	partSize  = flag.Int64("part-size", 8*mib, "storage.s3.part_size")
	outJSON   = flag.String("json", "", "write the figures as JSON here")
	keepDir   = flag.Bool("keep", false, "keep the temporary directory")
	clockTick = int64(100) // USER_HZ on Linux
)

type results map[string]float64

func main() {
	flag.Parse()
	if *wharfBin == "" {
		log.Fatal("-wharf is required")
	}
	dir, err := os.MkdirTemp("", "wharf-s3load-")
	if err != nil {
		log.Fatal(err)
	}
	if !*keepDir {
		defer os.RemoveAll(dir)
	}
	bin, err := miniotest.Binary()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	m, err := miniotest.Run(ctx, bin, filepath.Join(dir, "minio"))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Stop()
	log.Printf("MinIO at %s (pid %d)", m.Endpoint, m.PID())
	res := results{}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[s] = true
	}
	run := func(name string, fn func() error) {
		if !want[name] {
			return
		}
		log.Printf("---- %s", name)
		if err := fn(); err != nil {
			log.Fatalf("%s: %v", name, err)
		}
	}
	run("rss", func() error { return benchRSS(m, dir, res) })
	run("commit", func() error { return benchCommit(m, dir, res) })
	run("pull", func() error { return benchPull(m, dir, res) })
	run("push", func() error { return benchPush(m, dir, res) })

	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Println("\nfigure                                   value")
	for _, k := range keys {
		fmt.Printf("%-40s %10.3f\n", k, res[k])
	}
	fmt.Println()
	check := func(ok bool, format string, a ...any) {
		word := "PASS"
		if !ok {
			word = "FAIL"
		}
		fmt.Printf("%s  %s\n", word, fmt.Sprintf(format, a...))
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
		fmt.Printf("info  registry CPU per pull of a 15-layer 30 MiB image, redirects off / on = %.1f (per-request cost dominates)\n", v)
	}
	if v, ok := res["push_ratio_wharf_over_sdk"]; ok {
		check(v >= 0.8, "push throughput Wharf / SDK transfer manager = %.2f (>= 0.80)", v)
	}
	if *outJSON != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		_ = os.WriteFile(*outJSON, b, 0o644)
	}
}

// ---- the registry process ----

type wharf struct {
	url  string
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startWharf(m *miniotest.Server, dir, name string, redirect bool) (*wharf, error) {
	data := filepath.Join(dir, name)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd := exec.Command(*wharfBin, "serve")
	cmd.Env = append(os.Environ(),
		"WHARF_ADDR="+addr, "WHARF_DATA_DIR="+data, "WHARF_LOG_LEVEL=warn", "WHARF_LOG_FORMAT=json",
		"WHARF_STORAGE_DRIVER=s3", "WHARF_STORAGE_S3_ENDPOINT="+m.Endpoint, "WHARF_STORAGE_S3_REGION="+miniotest.Region,
		"WHARF_STORAGE_S3_BUCKET="+m.Bucket, "WHARF_STORAGE_S3_PREFIX="+name+"/",
		"WHARF_STORAGE_S3_ACCESS_KEY="+m.AccessKey, "WHARF_STORAGE_S3_SECRET_KEY="+m.SecretKey,
		"WHARF_STORAGE_S3_PATH_STYLE=true", "WHARF_STORAGE_S3_PART_SIZE="+strconv.FormatInt(*partSize, 10),
		"WHARF_SIGNING_SIGNER=s3", "WHARF_REDIRECT_ENABLED="+strconv.FormatBool(redirect))
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &wharf{url: "http://" + addr, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(w.done) }()
	for range 300 {
		if resp, err := http.Get(w.url + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return w, nil
			}
		}
		select {
		case <-w.done:
			return nil, fmt.Errorf("wharf exited; see %s.log", filepath.Join(dir, name))
		case <-time.After(100 * time.Millisecond):
		}
	}
	w.stop()
	return nil, errors.New("wharf did not start")
}

func (w *wharf) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *wharf) cpuTicks() int64 {
	ut, st := w.cpuUserSys()
	return ut + st
}

// cpuUserSys is utime and stime from /proc/<pid>/stat, in clock ticks.
func (w *wharf) cpuUserSys() (int64, int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.pid))
	if err != nil {
		log.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut, st
}

// cpuNanos is the process's CPU time from the scheduler (the sum of
// every thread's /proc/<pid>/task/<tid>/schedstat), exact where
// /proc/<pid>/stat counts 10 ms ticks.
func (w *wharf) cpuNanos() int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", w.pid))
	var t int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(b)); len(fs) > 0 {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			t += n
		}
	}
	return t
}

func (w *wharf) statusKB(field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func (w *wharf) resetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", w.pid), []byte("5"), 0)
}

// ---- data ----

// gen yields n pseudo-random bytes cheaply: a random 1 MiB block whose
// first 8 bytes carry the block number, so no two blocks are equal.
type gen struct {
	n, off int64
	block  []byte
	seed   uint64
}

func newGen(n int64, seed uint64) *gen {
	b := make([]byte, mib)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := range 8 {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return &gen{n: n, block: b, seed: seed}
}

func (g *gen) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	in := g.off % mib
	if in == 0 {
		blk := uint64(g.off/mib) ^ g.seed<<32
		for j := range 8 {
			g.block[j] = byte(blk >> (8 * j))
		}
	}
	n := copy(p, g.block[in:min(int64(len(g.block)), in+g.n-g.off)])
	g.off += int64(n)
	return n, nil
}

// ---- client ----

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}, Timeout: 30 * time.Minute}

func abs(base, loc string) string {
	if strings.HasPrefix(loc, "/") {
		return base + loc
	}
	return loc
}

func startUpload(base, repo string) (string, error) {
	resp, err := client.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST upload: %s", resp.Status)
	}
	return abs(base, resp.Header.Get("Location")), nil
}

func patch(base, loc string, body io.Reader, start, n int64) (string, error) {
	req, _ := http.NewRequest(http.MethodPatch, loc, body)
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", start, start+n-1))
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("PATCH: %s", resp.Status)
	}
	return abs(base, resp.Header.Get("Location")), nil
}

func finish(loc string, d string) (time.Duration, error) {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+d, nil)
	t := time.Now()
	resp, err := client.Do(req)
	el := time.Since(t)
	if err != nil {
		return 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("PUT: %s %s", resp.Status, b)
	}
	return el, nil
}

// pushChunked pushes size bytes in chunks of chunk bytes; it returns the
// digest and the final PUT's latency.
func pushChunked(base, repo string, size, chunk int64, seed uint64) (string, time.Duration, error) {
	return pushKnown(base, repo, size, chunk, seed, "")
}

// digestOf hashes what newGen(size, seed) yields (outside any timing).
func digestOf(size int64, seed uint64) string {
	h := sha256.New()
	_, _ = io.Copy(h, newGen(size, seed))
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// pushKnown is pushChunked; with d set the client does not hash while
// sending (the throughput comparison measures the registry, not us).
func pushKnown(base, repo string, size, chunk int64, seed uint64, d string) (string, time.Duration, error) {
	loc, err := startUpload(base, repo)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	g := newGen(size, seed)
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		var body io.Reader = io.LimitReader(g, n)
		if d == "" {
			body = io.TeeReader(body, h)
		}
		if loc, err = patch(base, loc, body, off, n); err != nil {
			return "", 0, err
		}
	}
	if d == "" {
		d = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	el, err := finish(loc, d)
	return d, el, err
}

// ---- scenarios ----

func benchRSS(m *miniotest.Server, dir string, res results) error {
	w, err := startWharf(m, dir, "rss", false)
	if err != nil {
		return err
	}
	defer w.stop()
	res["rss_idle_mib"] = float64(w.statusKB("VmRSS")) / 1024
	for i, s := range strings.Split(*rssSizes, ",") {
		sz, _ := strconv.ParseInt(s, 10, 64)
		w.resetPeak()
		var peak atomic.Int64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				if v := w.statusKB("VmRSS"); v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		t0 := time.Now()
		_, _, err := pushChunked(w.url, "bench/rss", sz*mib, mib, uint64(100+i))
		close(stop)
		<-sampled
		if err != nil {
			return err
		}
		hwm := max(peak.Load(), w.statusKB("VmHWM"))
		res["rss_peak_mib_"+s] = float64(hwm) / 1024
		res["rss_push_mibps_"+s] = float64(sz) / time.Since(t0).Seconds()
		log.Printf("%s MiB in 1 MiB chunks: peak RSS %.1f MiB, %.1f MiB/s", s, float64(hwm)/1024, res["rss_push_mibps_"+s])
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

func benchCommit(m *miniotest.Server, dir string, res results) error {
	w, err := startWharf(m, dir, "commit", false)
	if err != nil {
		return err
	}
	defer w.stop()
	var small, large []time.Duration
	for i := range 5 {
		_, el, err := pushChunked(w.url, "bench/commit", mib, mib, uint64(200+i))
		if err != nil {
			return err
		}
		small = append(small, el)
	}
	for i := range 3 {
		// 1 GiB plus a tail, in 64 MiB chunks, then the timed PUT.
		_, el, err := pushChunked(w.url, "bench/commit", 1<<30+12345, 64*mib, uint64(300+i))
		if err != nil {
			return err
		}
		large = append(large, el)
	}
	s, l := median(small), median(large)
	res["commit_ms_1m"] = float64(s.Microseconds()) / 1000
	res["commit_ms_1g"] = float64(l.Microseconds()) / 1000
	res["commit_ratio_1g_over_1m"] = l.Seconds() / s.Seconds()
	log.Printf("final PUT: 1 MiB %v (median of 5), 1 GiB %v (median of 3)", s, l)
	return nil
}

// layerSizes are the images the pull benchmark uses, 15 layers each.
var layerSizes = map[string][]int64{
	// a base OS layer, a runtime, dependencies, then small app layers
	"typical": {48 * mib, 24 * mib, 12 * mib, 8 * mib, 6 * mib, 5 * mib, 4 * mib, 3 * mib, 3 * mib, 2 * mib, 2 * mib, mib, mib, mib / 2, mib / 4},
	"small":   {2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib, 2 * mib},
}

// pushImage pushes a 15-layer image (tag v1).
func pushImage(base, repo string, sizes []int64) error {
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	var ls []desc
	for i, size := range sizes {
		d, _, err := pushChunked(base, repo, size, size, uint64(1000+i))
		if err != nil {
			return err
		}
		ls = append(ls, desc{"application/vnd.oci.image.layer.v1.tar+gzip", d, size})
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	sum := sha256.Sum256(cfg)
	cd := "sha256:" + hex.EncodeToString(sum[:])
	resp, err := client.Post(base+"/v2/"+repo+"/blobs/uploads/?digest="+cd, "application/octet-stream", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	resp.Body.Close()
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc{"application/vnd.oci.image.config.v1+json", cd, int64(len(cfg))}, "layers": ls})
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/v1", bytes.NewReader(man))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err = client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT manifest: %s", resp.Status)
	}
	return nil
}

// pull fetches the manifest and every blob (following 307s like any
// client; the signed URL carries no registry credential) and verifies
// every digest.
func pull(base, repo string) (int64, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/manifests/v1", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	var man struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	err = json.NewDecoder(resp.Body).Decode(&man)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	ds := []string{man.Config.Digest}
	for _, l := range man.Layers {
		ds = append(ds, l.Digest)
	}
	var total atomic.Int64
	jobs := make(chan string)
	errs := make(chan error, len(ds))
	var wg sync.WaitGroup
	for range *pullJobs {
		wg.Go(func() {
			var h hash.Hash = sha256.New()
			for d := range jobs {
				resp, err := client.Get(base + "/v2/" + repo + "/blobs/" + d)
				if err != nil {
					errs <- err
					continue
				}
				h.Reset()
				n, err := io.Copy(h, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("GET blob %s: %s %v", d, resp.Status, err)
					continue
				}
				if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
					errs <- fmt.Errorf("blob %s: got %s", d, got)
					continue
				}
				total.Add(n)
			}
		})
	}
	for _, d := range ds {
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	return total.Load(), nil
}

func benchPull(m *miniotest.Server, dir string, res results) error {
	for _, kind := range strings.Split(*imageKind, ",") {
		sizes, ok := layerSizes[kind]
		if !ok {
			return fmt.Errorf("unknown image %q", kind)
		}
		if err := benchPullImage(m, dir, res, kind, sizes); err != nil {
			return err
		}
	}
	return nil
}

func benchPullImage(m *miniotest.Server, dir string, res results, kind string, sizes []int64) error {
	measure := func(name string, redirect bool, pulls int) (float64, error) {
		name += "_" + kind
		w, err := startWharf(m, dir, name, redirect)
		if err != nil {
			return 0, err
		}
		defer w.stop()
		if err := pushImage(w.url, "bench/pull", sizes); err != nil {
			return 0, err
		}
		if _, err := pull(w.url, "bench/pull"); err != nil { // warm caches
			return 0, err
		}
		u0, s0 := w.cpuUserSys()
		c0, n0, t0 := w.cpuTicks(), w.cpuNanos(), time.Now()
		var bytes int64
		for range pulls {
			n, err := pull(w.url, "bench/pull")
			if err != nil {
				return 0, err
			}
			bytes += n
		}
		el := time.Since(t0)
		cpu := float64(w.cpuTicks()-c0) / float64(clockTick) * 1000 / float64(pulls) // ms per pull
		exact := float64(w.cpuNanos()-n0) / 1e6 / float64(pulls)
		res["pull_cpu_ms_per_image_schedstat_"+name] = exact
		u1, s1 := w.cpuUserSys()
		log.Printf("redirect=%v: schedstat CPU %.2f ms per pull (user %d ticks, system %d ticks in all)", redirect, exact, u1-u0, s1-s0)
		log.Printf("redirect=%v: %d pulls of %.1f MiB in %v, registry CPU %.2f ms per pull", redirect, pulls, float64(bytes)/float64(pulls)/mib, el.Round(time.Millisecond), cpu)
		res["pull_cpu_ms_per_image_"+name] = cpu
		res["pull_mibps_"+name] = float64(bytes) / mib / el.Seconds()
		return cpu, nil
	}
	off, err := measure("off", false, *pullsOff)
	if err != nil {
		return err
	}
	on, err := measure("on", true, *pullsOn)
	if err != nil {
		return err
	}
	if on <= 0 {
		on = 1000.0 / float64(clockTick) / float64(*pullsOn) // below one tick in the whole run
		log.Printf("redirects on used less than one clock tick; bounding with 1 tick")
	}
	res["pull_cpu_ratio_off_over_on_"+kind] = off / on
	return nil
}

func benchPush(m *miniotest.Server, dir string, res results) error {
	w, err := startWharf(m, dir, "push", false)
	if err != nil {
		return err
	}
	defer w.stop()
	size := *pushSize * mib
	c := s3.New(s3.Options{
		Region: miniotest.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
	up := transfermanager.New(c) // the SDK's upload manager with its defaults
	var best struct{ wharf, sdk float64 }
	// Best of three, interleaved: the machine may be shared.
	for i := range 3 {
		// Wharf: POST, one streamed PATCH of the whole blob, PUT ?digest=.
		d := digestOf(size, uint64(500+i))
		t0 := time.Now()
		if _, _, err := pushKnown(w.url, "bench/push", size, size, uint64(500+i), d); err != nil {
			return err
		}
		wr := float64(size) / mib / time.Since(t0).Seconds()
		t0 = time.Now()
		_, err := up.UploadObject(context.Background(), &transfermanager.UploadObjectInput{Bucket: &m.Bucket,
			Key: aws.String(fmt.Sprintf("sdk/blob-%d", i)), Body: io.NopCloser(newGen(size, uint64(600+i)))})
		if err != nil {
			return err
		}
		sr := float64(size) / mib / time.Since(t0).Seconds()
		log.Printf("push %d MiB: Wharf %.1f MiB/s, SDK transfer manager %.1f MiB/s", *pushSize, wr, sr)
		best.wharf, best.sdk = max(best.wharf, wr), max(best.sdk, sr)
	}
	res["push_mibps_wharf"] = best.wharf
	res["push_mibps_sdk_manager"] = best.sdk
	res["push_ratio_wharf_over_sdk"] = best.wharf / best.sdk
	return nil
}

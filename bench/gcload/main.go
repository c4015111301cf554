// Command gcload builds and checks the registry state the scale-out GC
// benchmark (bench/scaleout.sh) needs, and drives a mixed push/pull load
// while garbage collection runs.
//
//	gcload populate -target URL -state S.json [-blobs 10000 -referenced 5000 -layers 10 -size 1K -clients 16]
//	    pushes -blobs small blobs (monolithic POST ?digest=) at -clients
//	    concurrency into -repo, then -referenced/-layers manifests of -layers
//	    layers each (plus one shared config blob), tagged m0000…; blobs
//	    -referenced.. -blobs stay unreferenced. Writes the digests to -state.
//	gcload orphans -target URL -state S.json -blobs N -seed X
//	    pushes N more unreferenced blobs and adds them to the state's orphans.
//	gcload verify -target URL -state S.json [-orphans-gone]
//	    GETs every tagged manifest (digest checked) and every referenced
//	    blob (content checked) and every orphan (404 expected with -orphans-gone),
//	    and every manifest the mixed load pushed (-pushed FILE) with its blobs.
//	gcload mixed -target URL -state S.json -duration 10s -clients 16 -push-every 5 -pushed FILE -json
//	    each client loops: pull (GET a random tagged manifest, GET one of its
//	    layers) or, every -push-every ops, push (one fresh random blob, or
//	    re-upload an orphan digest that GC may be deleting right now, then a
//	    manifest referencing it, tagged). Bounded by -duration and -requests.
//	    Reports p50/p99/max per op kind and errors; pushed manifests go to -pushed.
//
// Every loop is bounded in count and time.
package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar"
	accept     = mtManifest + ", application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)

// State is what populate built; verify and mixed read it.
type State struct {
	Repo       string        `json:"repo"`
	Config     string        `json:"config"`
	Size       int           `json:"size"`
	Tags       []TaggedImage `json:"tags"`
	Referenced []string      `json:"referenced"` // layer digests (config excluded)
	Orphans    []string      `json:"orphans"`
	OrphanSrc  []BlobSrc     `json:"orphan_src"` // how to regenerate Orphans[i]
}

// BlobSrc regenerates a blob: blobBytes(Seed, Index, size).
type BlobSrc struct {
	Seed  uint
	Index int
}

// TaggedImage is one pushed manifest.
type TaggedImage struct {
	Repo   string   `json:"repo,omitempty"`
	Tag    string   `json:"tag"`
	Digest string   `json:"digest"`
	Layers []string `json:"layers"`
}

type client struct {
	base string
	hc   *http.Client
}

func newClient(target string, conns int, timeout time.Duration) *client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &client{base: strings.TrimRight(target, "/"), hc: &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request and checks the status; it returns the body (up to 4 MiB).
func (c *client) do(ctx context.Context, method, path string, hdr map[string]string, body []byte, want int) ([]byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return b, resp.Header, fmt.Errorf("%s %s: %s (want %d): %s", method, path, resp.Status, want, bytes.TrimSpace(trunc(b, 300)))
	}
	return b, resp.Header, nil
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// pushBlob uploads b monolithically: POST /blobs/uploads/?digest=.
func (c *client) pushBlob(ctx context.Context, repo string, b []byte) (string, error) {
	d := digestOf(b)
	_, _, err := c.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d,
		map[string]string{"Content-Type": "application/octet-stream"}, b, http.StatusCreated)
	return d, err
}

func (c *client) putManifest(ctx context.Context, repo, tag string, body []byte) error {
	_, _, err := c.do(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": mtManifest}, body, http.StatusCreated)
	return err
}

// blobBytes is blob i of a seed: deterministic, size bytes.
func blobBytes(seed uint, i int, size int) []byte {
	b := make([]byte, size)
	prefix := fmt.Sprintf("wharf-gcload seed=%d blob=%d\n", seed, i)
	r := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	copy(b, prefix)
	return b
}

type desc struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

func manifestBytes(config desc, layers []desc) []byte {
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, mtManifest, config, layers}
	b, _ := json.Marshal(m)
	return b
}

// parallel runs f(i) for i in [0,n) on k workers; it stops at the first
// error or when ctx ends.
func parallel(ctx context.Context, n, k int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < k; w++ {
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

func readState(p string) (*State, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var s State
	return &s, json.Unmarshal(b, &s)
}

func writeState(p string, s *State) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gcload populate|orphans|verify|mixed [flags]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	target := fs.String("target", "http://127.0.0.1:5000", "registry base URL")
	repo := fs.String("repo", "gc/app", "repository")
	statePath := fs.String("state", "gcstate.json", "state file")
	nBlobs := fs.Int("blobs", 10000, "blobs to push")
	nRef := fs.Int("referenced", 5000, "populate: how many of them manifests reference")
	nLayers := fs.Int("layers", 10, "populate: layers per manifest")
	size := fs.Int("size", 1024, "blob size in bytes")
	clients := fs.Int("clients", 16, "concurrency")
	seed := fs.Uint("seed", 1, "blob content seed")
	orphansGone := fs.Bool("orphans-gone", false, "verify: orphans must answer 404")
	pushed := fs.String("pushed", "", "mixed: write pushed manifests here (JSON lines); verify: check them")
	duration := fs.Duration("duration", 10*time.Second, "mixed: measured length")
	maxOps := fs.Int64("requests", 2_000_000, "mixed: stop after this many ops")
	pushEvery := fs.Int("push-every", 5, "mixed: one op in N is a push (0: none)")
	label := fs.String("label", "mixed", "mixed: result label")
	jsonOut := fs.Bool("json", false, "mixed: one JSON line on stdout")
	timeout := fs.Duration("timeout", 60*time.Second, "per-request timeout")
	_ = fs.Parse(args)
	// A hard bound on every command.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c := newClient(*target, *clients, *timeout)
	var err error
	switch cmd {
	case "populate":
		err = populate(ctx, c, *statePath, *repo, *nBlobs, *nRef, *nLayers, *size, *clients, *seed)
	case "orphans":
		err = orphans(ctx, c, *statePath, *nBlobs, *clients, *seed)
	case "verify":
		err = verify(ctx, c, *statePath, *orphansGone, *pushed, *clients)
	case "mixed":
		err = mixed(ctx, c, *statePath, *pushed, *label, *clients, *pushEvery, *duration, *maxOps, *jsonOut)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcload:", err)
		os.Exit(1)
	}
}

func populate(ctx context.Context, c *client, statePath, repo string, nBlobs, nRef, nLayers, size, k int, seed uint) error {
	if nRef > nBlobs || nLayers < 1 || nRef%nLayers != 0 {
		return errors.New("-referenced must be ≤ -blobs and a multiple of -layers")
	}
	st := &State{Repo: repo, Size: size}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd, err := c.pushBlob(ctx, repo, cfg)
	if err != nil {
		return err
	}
	st.Config = cd
	digests := make([]string, nBlobs)
	t0 := time.Now()
	err = parallel(ctx, nBlobs, k, func(ctx context.Context, i int) error {
		d, err := c.pushBlob(ctx, repo, blobBytes(seed, i, size))
		digests[i] = d
		return err
	})
	if err != nil {
		return err
	}
	tBlobs := time.Since(t0)
	st.Referenced = digests[:nRef]
	st.Orphans = digests[nRef:]
	for i := nRef; i < nBlobs; i++ {
		st.OrphanSrc = append(st.OrphanSrc, BlobSrc{seed, i})
	}
	nMan := nRef / nLayers
	st.Tags = make([]TaggedImage, nMan)
	t1 := time.Now()
	err = parallel(ctx, nMan, k, func(ctx context.Context, m int) error {
		layers := make([]desc, nLayers)
		for j := range layers {
			layers[j] = desc{mtLayer, digests[m*nLayers+j], int64(size)}
		}
		body := manifestBytes(desc{mtConfig, cd, int64(len(cfg))}, layers)
		tag := fmt.Sprintf("m%04d", m)
		st.Tags[m] = TaggedImage{Tag: tag, Digest: digestOf(body), Layers: digests[m*nLayers : (m+1)*nLayers]}
		return c.putManifest(ctx, repo, tag, body)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "populate: %d blobs of %d B in %s (%.0f/s), %d manifests × %d layers in %s (%.0f/s); %d referenced, %d unreferenced (+1 shared config blob)\n",
		nBlobs, size, tBlobs.Round(time.Millisecond), float64(nBlobs)/tBlobs.Seconds(), nMan, nLayers,
		time.Since(t1).Round(time.Millisecond), float64(nMan)/time.Since(t1).Seconds(), nRef, nBlobs-nRef)
	return writeState(statePath, st)
}

func orphans(ctx context.Context, c *client, statePath string, n, k int, seed uint) error {
	st, err := readState(statePath)
	if err != nil {
		return err
	}
	digests := make([]string, n)
	t0 := time.Now()
	err = parallel(ctx, n, k, func(ctx context.Context, i int) error {
		d, err := c.pushBlob(ctx, st.Repo, blobBytes(seed, i, st.Size))
		digests[i] = d
		return err
	})
	if err != nil {
		return err
	}
	st.Orphans, st.OrphanSrc = digests, nil
	for i := range digests {
		st.OrphanSrc = append(st.OrphanSrc, BlobSrc{seed, i})
	}
	fmt.Fprintf(os.Stderr, "orphans: %d unreferenced blobs in %s\n", n, time.Since(t0).Round(time.Millisecond))
	return writeState(statePath, st)
}

// VerifyResult is what verify found.
type VerifyResult struct {
	Manifests      int      `json:"manifests_ok"`
	ManifestErrs   int      `json:"manifest_errors"`
	Blobs          int      `json:"referenced_blobs_ok"`
	BlobErrs       int      `json:"referenced_blob_errors"`
	OrphansGone    int      `json:"orphans_404"`
	OrphansPresent int      `json:"orphans_present"`
	Pushed         int      `json:"pushed_manifests_ok"`
	PushedErrs     int      `json:"pushed_manifest_errors"`
	Examples       []string `json:"examples,omitempty"`
}

func verify(ctx context.Context, c *client, statePath string, orphansGone bool, pushedPath string, k int) error {
	st, err := readState(statePath)
	if err != nil {
		return err
	}
	images := slices.Clone(st.Tags)
	for i := range images {
		images[i].Repo = st.Repo
	}
	nState := len(images)
	if pushedPath != "" {
		b, err := os.ReadFile(pushedPath)
		if err != nil {
			return err
		}
		for _, l := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			var t TaggedImage
			if err := json.Unmarshal(l, &t); err != nil {
				return err
			}
			images = append(images, t)
		}
	}
	var mu sync.Mutex
	var r VerifyResult
	note := func(ok *int, bad *int, good bool, msg string) {
		mu.Lock()
		defer mu.Unlock()
		if good {
			*ok++
			return
		}
		*bad++
		if len(r.Examples) < 10 {
			r.Examples = append(r.Examples, msg)
		}
	}
	err = parallel(ctx, len(images), k, func(ctx context.Context, i int) error {
		im := images[i]
		okC, badC := &r.Manifests, &r.ManifestErrs
		if i >= nState {
			okC, badC = &r.Pushed, &r.PushedErrs
		}
		body, _, err := c.do(ctx, http.MethodGet, "/v2/"+im.Repo+"/manifests/"+im.Tag, map[string]string{"Accept": accept}, nil, http.StatusOK)
		if err == nil && digestOf(body) != im.Digest {
			err = fmt.Errorf("%s:%s: digest %s, pushed %s", im.Repo, im.Tag, digestOf(body), im.Digest)
		}
		good := err == nil
		for _, l := range append(im.Layers, st.Config) {
			// GET, not just HEAD: the bytes must still be in storage.
			b, _, e := c.do(ctx, http.MethodGet, "/v2/"+im.Repo+"/blobs/"+l, nil, nil, http.StatusOK)
			if e == nil && digestOf(b) != l {
				e = fmt.Errorf("blob %s: content does not match", l)
			}
			if e != nil {
				good, err = false, e
				if i < nState {
					note(&r.Blobs, &r.BlobErrs, false, e.Error())
				}
			} else if i < nState && l != st.Config {
				note(&r.Blobs, &r.BlobErrs, true, "")
			}
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		note(okC, badC, good, msg)
		return nil
	})
	if err != nil {
		return err
	}
	err = parallel(ctx, len(st.Orphans), k, func(ctx context.Context, i int) error {
		_, _, e := c.do(ctx, http.MethodHead, "/v2/"+st.Repo+"/blobs/"+st.Orphans[i], nil, nil, http.StatusNotFound)
		mu.Lock()
		if e == nil {
			r.OrphansGone++
		} else {
			r.OrphansPresent++
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	if r.ManifestErrs+r.BlobErrs+r.PushedErrs > 0 || (orphansGone && r.OrphansPresent > 0) {
		return fmt.Errorf("verify failed: %s", b)
	}
	return nil
}

// MixedResult is one measured mixed-load phase.
type MixedResult struct {
	Label      string  `json:"label"`
	Clients    int     `json:"clients"`
	Seconds    float64 `json:"seconds"`
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	PullOps    int     `json:"pull_ops"`
	PullP50    float64 `json:"pull_p50_ms"`
	PullP99    float64 `json:"pull_p99_ms"`
	PullMax    float64 `json:"pull_max_ms"`
	PushOps    int     `json:"push_ops"`
	PushP50    float64 `json:"push_p50_ms"`
	PushP99    float64 `json:"push_p99_ms"`
	PushMax    float64 `json:"push_max_ms"`
	Revived    int64   `json:"orphans_reuploaded"`
	AllP50     float64 `json:"p50_ms"`
	AllP99     float64 `json:"p99_ms"`
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p * float64(len(ds)-1))
	return float64(ds[i].Microseconds()) / 1000
}

func mixed(ctx context.Context, c *client, statePath, pushedPath, label string, k, pushEvery int, dur time.Duration, maxOps int64, jsonOut bool) error {
	st, err := readState(statePath)
	if err != nil {
		return err
	}
	pushRepo := st.Repo + "-push"
	cfgBytes := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	if _, err := c.pushBlob(ctx, pushRepo, cfgBytes); err != nil {
		return err
	}
	var pushedF *os.File
	if pushedPath != "" {
		if pushedF, err = os.OpenFile(pushedPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
		defer pushedF.Close()
	}
	var (
		mu         sync.Mutex
		pulls      []time.Duration
		pushes     []time.Duration
		ops, errs  atomic.Int64
		revived    atomic.Int64
		firstError atomic.Value
		orphanNext atomic.Int64
	)
	runID := time.Now().UnixNano()
	deadline := time.Now().Add(dur)
	dctx, dcancel := context.WithDeadline(ctx, deadline.Add(2*time.Minute)) // requests in flight may finish
	defer dcancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(runID), uint64(w)))
			var myPulls, myPushes []time.Duration
			for n := 0; time.Now().Before(deadline) && ops.Load() < maxOps; n++ {
				isPush := pushEvery > 0 && n%pushEvery == pushEvery-1
				t0 := time.Now()
				var err error
				if isPush {
					var blob []byte
					if (n/pushEvery)%2 == 1 && len(st.Orphans) > 0 {
						// Re-upload an orphan that a concurrent GC pass may be deleting.
						i := int(orphanNext.Add(1)-1) % len(st.Orphans)
						d := st.Orphans[i]
						blob = blobBytes(st.OrphanSrc[i].Seed, st.OrphanSrc[i].Index, st.Size)
						if digestOf(blob) != d {
							err = fmt.Errorf("orphan %d: cannot regenerate %s", i, d)
						}
						revived.Add(1)
					} else {
						blob = make([]byte, st.Size)
						_, _ = crand.Read(blob)
					}
					if err == nil {
						var d string
						d, err = c.pushBlob(dctx, pushRepo, blob)
						if err == nil {
							body := manifestBytes(desc{mtConfig, st.Config, int64(len(cfgBytes))}, []desc{{mtLayer, d, int64(len(blob))}})
							tag := fmt.Sprintf("p%d-%d-%d", runID%1_000_000, w, n)
							if err = c.putManifest(dctx, pushRepo, tag, body); err == nil && pushedF != nil {
								line, _ := json.Marshal(TaggedImage{Repo: pushRepo, Tag: tag, Digest: digestOf(body), Layers: []string{d}})
								mu.Lock()
								_, _ = pushedF.Write(append(line, '\n'))
								mu.Unlock()
							}
						}
					}
				} else {
					im := st.Tags[rng.IntN(len(st.Tags))]
					var body []byte
					body, _, err = c.do(dctx, http.MethodGet, "/v2/"+st.Repo+"/manifests/"+im.Tag, map[string]string{"Accept": accept}, nil, http.StatusOK)
					if err == nil && digestOf(body) != im.Digest {
						err = fmt.Errorf("manifest %s: wrong digest", im.Tag)
					}
					if err == nil {
						l := im.Layers[rng.IntN(len(im.Layers))]
						body, _, err = c.do(dctx, http.MethodGet, "/v2/"+st.Repo+"/blobs/"+l, nil, nil, http.StatusOK)
						if err == nil && digestOf(body) != l {
							err = fmt.Errorf("blob %s: wrong content", l)
						}
					}
				}
				el := time.Since(t0)
				ops.Add(1)
				if err != nil {
					if errs.Add(1) == 1 {
						firstError.Store(err.Error())
					}
					continue
				}
				if isPush {
					myPushes = append(myPushes, el)
				} else {
					myPulls = append(myPulls, el)
				}
			}
			mu.Lock()
			pulls = append(pulls, myPulls...)
			pushes = append(pushes, myPushes...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	all := append(slices.Clone(pulls), pushes...)
	r := MixedResult{Label: label, Clients: k, Seconds: secs, Ops: ops.Load(), Errors: errs.Load(),
		OpsPerSec: float64(ops.Load()-errs.Load()) / secs,
		PullOps:   len(pulls), PullP50: pct(pulls, .5), PullP99: pct(pulls, .99), PullMax: pct(pulls, 1),
		PushOps: len(pushes), PushP50: pct(pushes, .5), PushP99: pct(pushes, .99), PushMax: pct(pushes, 1),
		Revived: revived.Load(), AllP50: pct(all, .5), AllP99: pct(all, .99)}
	if v, ok := firstError.Load().(string); ok {
		r.FirstError = v
	}
	fmt.Fprintf(os.Stderr, "%s: %d ops (%d errors) in %.1fs, %.0f ops/s; pull p50 %.2f p99 %.2f max %.1f ms (%d); push p50 %.2f p99 %.2f max %.1f ms (%d, %d orphan re-uploads)%s\n",
		label, r.Ops, r.Errors, secs, r.OpsPerSec, r.PullP50, r.PullP99, r.PullMax, r.PullOps, r.PushP50, r.PushP99, r.PushMax, r.PushOps, r.Revived,
		map[bool]string{true: "; first error: " + r.FirstError, false: ""}[r.FirstError != ""])
	if jsonOut {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
	}
	return nil
}

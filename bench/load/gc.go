package main

// The garbage-collection commands of bench/scaleout.sh:
//
//	gc-populate  pushes -blobs small blobs (monolithic POST ?digest=) at
//	             -clients concurrency into -repo, then -referenced/-layers
//	             manifests of -layers layers each (plus the shared config
//	             blob), tagged m0000…; blobs -referenced.. -blobs stay
//	             unreferenced. Writes the digests to -state.
//	gc-orphans   pushes -blobs more unreferenced blobs (-seed); they
//	             replace the state's orphans.
//	gc-verify    GETs every tagged manifest (digest checked), every
//	             referenced blob (content checked), every manifest the mixed
//	             load pushed (-pushed) with its blobs, and HEADs every orphan
//	             (404 required with -orphans-gone).
//	gc-mixed     each op is a pull (GET a random tagged manifest, GET one of
//	             its layers) or, one in -push-every, a push (a fresh random
//	             blob, or every other push an orphan that GC may be deleting
//	             right now, then a tagged manifest referencing it). Bounded
//	             by -duration and -requests; p50/p99/max per kind of op.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// gcState is what gc-populate built; the other gc commands read it.
type gcState struct {
	Repo       string        `json:"repo"`
	Config     string        `json:"config"`
	Size       int           `json:"size"`
	Tags       []taggedImage `json:"tags"`
	Referenced []string      `json:"referenced"` // layer digests (config excluded)
	Orphans    []string      `json:"orphans"`
	OrphanSrc  []blobSrc     `json:"orphan_src"` // how to regenerate Orphans[i]
}

// blobSrc regenerates a blob: gcBlob(Seed, Index, size).
type blobSrc struct {
	Seed  uint64
	Index int
}

// taggedImage is one pushed manifest.
type taggedImage struct {
	Repo   string   `json:"repo,omitempty"`
	Tag    string   `json:"tag"`
	Digest string   `json:"digest"`
	Layers []string `json:"layers"`
}

func gcBlob(seed uint64, i, size int) []byte { return genBlob(blobSeed(seed, i), size) }

func manifestBytes(layers ...descriptor) []byte {
	b, _ := json.Marshal(manifest{SchemaVersion: 2, MediaType: mtManifest,
		Config: descriptor{MediaType: mtConfig, Digest: sha256Digest(configJSON), Size: int64(len(configJSON))}, Layers: layers})
	return b
}

func readState(p string) (*gcState, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var s gcState
	return &s, json.Unmarshal(b, &s)
}

// openState reads -state and makes the client of the flags.
func openState(ctx context.Context, o *opts) (*gcState, *regClient, error) {
	st, err := readState(o.state)
	if err != nil {
		return nil, nil, err
	}
	c, err := o.client(ctx)
	return st, c, err
}

func writeState(p string, s *gcState) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// pushBlobs pushes blobs 0..n-1 of seed in parallel and returns their digests.
func pushBlobs(ctx context.Context, c *regClient, o *opts, n, size int) ([]string, time.Duration, error) {
	digests := make([]string, n)
	t0 := time.Now()
	err := parallel(ctx, n, o.clients, func(ctx context.Context, i int) error {
		d, err := c.postBlob(ctx, gcBlob(o.seed, i, size))
		digests[i] = d
		return err
	})
	return digests, time.Since(t0), err
}

func gcPopulate(ctx context.Context, o *opts) error {
	if o.referenced > o.blobs || o.layers < 1 || o.referenced%o.layers != 0 {
		return errors.New("-referenced must be ≤ -blobs and a multiple of -layers")
	}
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	size := int(o.size)
	st := &gcState{Repo: o.repo, Size: size}
	if st.Config, err = c.postBlob(ctx, configJSON); err != nil {
		return err
	}
	digests, tBlobs, err := pushBlobs(ctx, c, o, o.blobs, size)
	if err != nil {
		return err
	}
	st.Referenced, st.Orphans = digests[:o.referenced], digests[o.referenced:]
	for i := o.referenced; i < o.blobs; i++ {
		st.OrphanSrc = append(st.OrphanSrc, blobSrc{o.seed, i})
	}
	nMan := o.referenced / o.layers
	st.Tags = make([]taggedImage, nMan)
	t1 := time.Now()
	err = parallel(ctx, nMan, o.clients, func(ctx context.Context, m int) error {
		layers := make([]descriptor, o.layers)
		for j := range layers {
			layers[j] = descriptor{mtLayer, digests[m*o.layers+j], int64(size)}
		}
		body := manifestBytes(layers...)
		tag := fmt.Sprintf("m%04d", m)
		st.Tags[m] = taggedImage{Tag: tag, Digest: sha256Digest(body), Layers: digests[m*o.layers : (m+1)*o.layers]}
		return c.putManifest(ctx, tag, body)
	})
	if err != nil {
		return err
	}
	tMan := time.Since(t1)
	fmt.Fprintf(os.Stderr, "populate: %d blobs of %d B in %s (%.0f/s), %d manifests × %d layers in %s (%.0f/s); %d referenced, %d unreferenced (+1 shared config blob)\n",
		o.blobs, size, tBlobs.Round(time.Millisecond), float64(o.blobs)/tBlobs.Seconds(), nMan, o.layers,
		tMan.Round(time.Millisecond), float64(nMan)/tMan.Seconds(), o.referenced, o.blobs-o.referenced)
	return writeState(o.state, st)
}

func gcOrphans(ctx context.Context, o *opts) error {
	st, c, err := openState(ctx, o)
	if err != nil {
		return err
	}
	digests, t, err := pushBlobs(ctx, c.withRepo(st.Repo), o, o.blobs, st.Size)
	if err != nil {
		return err
	}
	st.Orphans, st.OrphanSrc = digests, nil
	for i := range digests {
		st.OrphanSrc = append(st.OrphanSrc, blobSrc{o.seed, i})
	}
	fmt.Fprintf(os.Stderr, "orphans: %d unreferenced blobs in %s\n", len(digests), t.Round(time.Millisecond))
	return writeState(o.state, st)
}

// verifyResult is what gc-verify found.
type verifyResult struct {
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

// pullImage GETs a manifest (its digest checked) and every blob it names
// (content checked); blobOK is told about each blob.
func pullImage(ctx context.Context, c *regClient, im taggedImage, config string, blobOK func(d string, err error)) error {
	c = c.withRepo(im.Repo)
	body, err := c.manifestBody(ctx, im.Tag)
	if err == nil && sha256Digest(body) != im.Digest {
		err = fmt.Errorf("%s:%s: digest %s, pushed %s", im.Repo, im.Tag, sha256Digest(body), im.Digest)
	}
	for _, l := range append(slices.Clone(im.Layers), config) {
		// GET, not just HEAD: the bytes must still be in storage.
		_, e := c.getBlob(ctx, l)
		blobOK(l, e)
		if e != nil {
			err = e
		}
	}
	return err
}

func gcVerify(ctx context.Context, o *opts) error {
	st, c, err := openState(ctx, o)
	if err != nil {
		return err
	}
	images := slices.Clone(st.Tags)
	for i := range images {
		images[i].Repo = st.Repo
	}
	nState := len(images)
	if o.pushed != "" {
		b, err := os.ReadFile(o.pushed)
		if err != nil {
			return err
		}
		for _, l := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			var t taggedImage
			if err := json.Unmarshal(l, &t); err != nil {
				return err
			}
			images = append(images, t)
		}
	}
	var mu sync.Mutex
	var r verifyResult
	note := func(ok, bad *int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			*ok++
			return
		}
		*bad++
		if len(r.Examples) < 10 {
			r.Examples = append(r.Examples, err.Error())
		}
	}
	err = parallel(ctx, len(images), o.clients, func(ctx context.Context, i int) error {
		okC, badC := &r.Manifests, &r.ManifestErrs
		if i >= nState {
			okC, badC = &r.Pushed, &r.PushedErrs
		}
		err := pullImage(ctx, c, images[i], st.Config, func(d string, err error) {
			if i < nState && (d != st.Config || err != nil) {
				note(&r.Blobs, &r.BlobErrs, err)
			}
		})
		note(okC, badC, err)
		return nil
	})
	if err != nil {
		return err
	}
	err = parallel(ctx, len(st.Orphans), o.clients, func(ctx context.Context, i int) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, c.url("/v2/"+st.Repo+"/blobs/"+st.Orphans[i]), nil)
		_, _, e := c.do(req, http.StatusNotFound)
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
	if r.ManifestErrs+r.BlobErrs+r.PushedErrs > 0 || (o.orphansGone && r.OrphansPresent > 0) {
		return fmt.Errorf("verify failed: %s", b)
	}
	return nil
}

// mixedResult is one measured gc-mixed phase: the Result of all ops plus
// the figures per kind.
type mixedResult struct {
	Result
	PullOps int     `json:"pull_ops"`
	PullP50 float64 `json:"pull_p50_ms"`
	PullP99 float64 `json:"pull_p99_ms"`
	PullMax float64 `json:"pull_max_ms"`
	PushOps int     `json:"push_ops"`
	PushP50 float64 `json:"push_p50_ms"`
	PushP99 float64 `json:"push_p99_ms"`
	PushMax float64 `json:"push_max_ms"`
	Revived int64   `json:"orphans_reuploaded"`
}

const (
	kindPull = iota
	kindPush
)

func gcMixed(ctx context.Context, o *opts) error {
	st, c, err := openState(ctx, o)
	if err != nil {
		return err
	}
	if len(st.Tags) == 0 {
		return errors.New("the state has no tagged images")
	}
	pull, push := c.withRepo(st.Repo), c.withRepo(st.Repo+"-push")
	if _, err := push.postBlob(ctx, configJSON); err != nil {
		return err
	}
	var pushedF io.Writer = io.Discard
	if o.pushed != "" {
		f, err := os.OpenFile(o.pushed, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		pushedF = f
	}
	var mu sync.Mutex
	var revived, orphanNext atomic.Int64
	runID := time.Now().UnixNano()
	base := randomSeed()
	kindOf := func(i int64) int {
		if o.pushEvery > 0 && i%int64(o.pushEvery) == int64(o.pushEvery-1) {
			return kindPush
		}
		return kindPull
	}
	op := func(ctx context.Context, w int, i int64) (int64, error) {
		if kindOf(i) == kindPull {
			rng := rand.New(rand.NewPCG(base, uint64(i)))
			im := st.Tags[rng.IntN(len(st.Tags))]
			body, err := pull.manifestBody(ctx, im.Tag)
			if err == nil && sha256Digest(body) != im.Digest {
				err = fmt.Errorf("manifest %s: wrong digest", im.Tag)
			}
			if err != nil {
				return 0, err
			}
			return pull.getBlob(ctx, im.Layers[rng.IntN(len(im.Layers))])
		}
		blob := genBlob(base+uint64(i)*0x9e3779b97f4a7c15, st.Size)
		if (i/int64(o.pushEvery))%2 == 1 && len(st.Orphans) > 0 {
			// Re-upload an orphan that a concurrent GC pass may be deleting.
			k := int(orphanNext.Add(1)-1) % len(st.Orphans)
			blob = gcBlob(st.OrphanSrc[k].Seed, st.OrphanSrc[k].Index, st.Size)
			if sha256Digest(blob) != st.Orphans[k] {
				return 0, fmt.Errorf("orphan %d: cannot regenerate %s", k, st.Orphans[k])
			}
			revived.Add(1)
		}
		d, err := push.postBlob(ctx, blob)
		if err != nil {
			return 0, err
		}
		body := manifestBytes(descriptor{mtLayer, d, int64(len(blob))})
		tag := fmt.Sprintf("p%d-%d-%d", runID%1_000_000, w, i)
		if err := push.putManifest(ctx, tag, body); err != nil {
			return 0, err
		}
		line, _ := json.Marshal(taggedImage{Repo: push.repo, Tag: tag, Digest: sha256Digest(body), Layers: []string{d}})
		mu.Lock()
		_, _ = pushedF.Write(append(line, '\n'))
		mu.Unlock()
		return int64(len(blob)), nil
	}
	res, p, err := measure(o, loop{op: op, kinds: 2, kindOf: kindOf})
	if err != nil {
		return err
	}
	r := mixedResult{Result: res, PullOps: len(p.lat[kindPull]), PushOps: len(p.lat[kindPush]), Revived: revived.Load()}
	r.Scenario = "gc-mixed"
	r.PullP50, r.PullP99, r.PullMax = latencies(p.lat[kindPull])
	r.PushP50, r.PushP99, r.PushMax = latencies(p.lat[kindPush])
	emit(o, r, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %d ops (%d errors) in %.1fs, %.0f ops/s; pull p50 %.2f p99 %.2f max %.1f ms (%d); push p50 %.2f p99 %.2f max %.1f ms (%d, %d orphan re-uploads)",
			r.Label, r.Ops, r.Errors, r.Seconds, r.OpsPerSec, r.PullP50, r.PullP99, r.PullMax, r.PullOps, r.PushP50, r.PushP99, r.PushMax, r.PushOps, r.Revived)
		if r.FirstError != "" {
			fmt.Fprintf(w, "; first error: %s", r.FirstError)
		}
		fmt.Fprintln(w)
	})
	return nil
}

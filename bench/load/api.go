package main

// The registry API scenarios: one op per request pattern, measured by
// bench/run.sh, batch.sh, auth.sh, middleware.sh and scaleout.sh.

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func scenarioMain(ctx context.Context, name string, o *opts) error {
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	op, err := prepare(ctx, name, c, o)
	if err != nil {
		return err
	}
	if name == "push-large" {
		o.clients, o.requests, o.warmup = 1, 1, 0
	}
	res, _, err := measure(o, loop{op: op})
	if err != nil {
		return err
	}
	res.Scenario = name
	if name == "blob-get" {
		res.Size = o.layerSize
	} else if strings.HasPrefix(name, "push") {
		res.Size = o.size
	}
	emit(o, res, func(w io.Writer) { printResult(w, res) })
	if res.Ops == 0 {
		return fmt.Errorf("no successful operations; first error: %s", res.FirstError)
	}
	return nil
}

// emit writes v as one JSON line on stdout with -json, and the human
// summary on stderr for whoever watches; without -json only the summary,
// on stdout.
func emit(o *opts, v any, human func(w io.Writer)) {
	if !o.jsonOut {
		human(os.Stdout)
		return
	}
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
	human(os.Stderr)
}

func prepare(ctx context.Context, name string, c *regClient, o *opts) (opFunc, error) {
	mpath := c.url("/v2/" + c.repo + "/manifests/" + o.tag)
	send := func(method, path, accept string, want int) opFunc {
		return func(ctx context.Context, _ int, _ int64) (int64, error) {
			req, _ := http.NewRequestWithContext(ctx, method, path, nil)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			n, _, err := c.do(req, want)
			return n, err
		}
	}
	get := func(path, accept string, want int) opFunc { return send(http.MethodGet, path, accept, want) }
	switch name {
	case "manifest-get":
		return get(mpath, manifestAccept, http.StatusOK), nil
	case "manifest-head":
		return send(http.MethodHead, mpath, manifestAccept, http.StatusOK), nil
	case "tags-list":
		return get(c.url("/v2/"+c.repo+"/tags/list"), "", http.StatusOK), nil
	case "batch":
		// One image's signed URLs in one request (the batch endpoint).
		return get(mpath+"/blobs?expiry=3600", "", http.StatusOK), nil
	case "blob-get", "nplus1":
		m, err := c.getManifest(ctx, o.tag)
		if err != nil {
			return nil, fmt.Errorf("%s needs the setup image: %w", name, err)
		}
		if len(m.Layers) == 0 {
			return nil, errors.New("the test image has no layers")
		}
		if name == "blob-get" {
			return func(ctx context.Context, _ int, i int64) (int64, error) {
				l := m.Layers[int(i)%len(m.Layers)]
				n, err := get(c.url("/v2/"+c.repo+"/blobs/"+l.Digest), "", http.StatusOK)(ctx, 0, i)
				if err == nil && n != l.Size {
					err = fmt.Errorf("blob %s: read %d bytes, want %d", l.Digest, n, l.Size)
				}
				return n, err
			}, nil
		}
		// The same URLs the standard way: the manifest, then every blob
		// answered with a 307 to its signed URL (the server runs with
		// redirects on; the redirect is not followed). One op = one image.
		ops := []opFunc{get(mpath, manifestAccept, http.StatusOK)}
		for _, b := range append([]descriptor{m.Config}, m.Layers...) {
			ops = append(ops, get(c.url("/v2/"+c.repo+"/blobs/"+b.Digest), "", http.StatusTemporaryRedirect))
		}
		return func(ctx context.Context, w int, i int64) (int64, error) {
			var total int64
			for _, op := range ops {
				n, err := op(ctx, w, i)
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
			_, _, err := c.pushStream(ctx, seed, o.size, o.chunk, "")
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

// setupMain pushes the test image: a config blob, o.layers layers of
// o.layerSize deterministic bytes, one manifest tagged o.tag and t1..tN-1.
func setupMain(ctx context.Context, o *opts) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := o.client(ctx)
	if err != nil {
		return err
	}
	if err := c.ping(ctx); err != nil {
		return err
	}
	cfg := configJSON
	m := manifest{SchemaVersion: 2, MediaType: mtManifest,
		Config: descriptor{MediaType: mtConfig, Digest: sha256Digest(cfg), Size: int64(len(cfg))}}
	if err := c.pushBlob(ctx, cfg, m.Config.Digest); err != nil {
		return fmt.Errorf("config blob: %w", err)
	}
	for i := 0; i < o.layers; i++ {
		b := genBlob(uint64(i+1)*0x9e3779b97f4a7c15, int(o.layerSize))
		d := sha256Digest(b)
		if err := c.pushBlob(ctx, b, d); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, descriptor{MediaType: mtLayer, Digest: d, Size: int64(len(b))})
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

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	mtManifest     = "application/vnd.oci.image.manifest.v1+json"
	mtConfig       = "application/vnd.oci.image.config.v1+json"
	mtLayer        = "application/vnd.oci.image.layer.v1.tar+gzip"
	manifestAccept = mtManifest + ", application/vnd.oci.image.index.v1+json, " +
		"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
)

// configJSON is the config blob of every test image.
var configJSON = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)

// regClient speaks the parts of the distribution API the scenarios use:
// one keep-alive connection per client, no proxy, no compression, and
// redirects not followed (followRedirects turns that on).
type regClient struct {
	base *url.URL // http://host:port
	repo string
	hc   *http.Client
}

func newRegClient(target, repo string, clients int, timeout time.Duration) (*regClient, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want http://host:port", target)
	}
	u.Path, u.RawQuery = "", ""
	tr := &http.Transport{
		Proxy:               nil, // loopback: never a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        clients * 2,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
	return &regClient{base: u, repo: repo, hc: &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (c *regClient) url(path string) string { return c.base.String() + path }

// withRepo is c on another repository (the same connections and login).
func (c *regClient) withRepo(repo string) *regClient {
	d := *c
	d.repo = repo
	return &d
}

// followRedirects makes c follow redirects, as a pulling client does
// (signed blob URLs).
func (c *regClient) followRedirects() { c.hc.CheckRedirect = nil }

// resolve turns a Location header (absolute or relative) into a URL.
func (c *regClient) resolve(loc string) (*url.URL, error) {
	if loc == "" {
		return nil, fmt.Errorf("response has no Location")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return c.base.ResolveReference(u), nil
}

// do sends req, drains and closes the body, and returns the number of body
// bytes read and the headers. A status not in want is an error.
func (c *regClient) do(req *http.Request, want ...int) (int64, http.Header, error) {
	return c.fetch(req, io.Discard, want...)
}

// fetch is do with the body copied to sink.
func (c *regClient) fetch(req *http.Request, sink io.Writer, want ...int) (int64, http.Header, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			n, err := io.Copy(sink, resp.Body)
			return n, resp.Header, err
		}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return 0, resp.Header, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(msg))
}

// ping waits for GET /v2/ to answer (200, or 401 when auth is on),
// polling every 100ms until ctx ends.
func (c *regClient) ping(ctx context.Context) error {
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"), nil)
		if _, _, err := c.do(req, http.StatusOK, http.StatusUnauthorized); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry not ready: %v", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startUpload POSTs to /blobs/uploads/ and returns the upload's Location.
func (c *regClient) startUpload(ctx context.Context) (*url.URL, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/v2/"+c.repo+"/blobs/uploads/"), nil)
	_, h, err := c.do(req, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	return c.resolve(h.Get("Location"))
}

// finishUpload PUTs the last chunk (body may be nil) with the digest.
func (c *regClient) finishUpload(ctx context.Context, loc *url.URL, digest string, body io.Reader, n int64) error {
	u := *loc
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	req.ContentLength = n
	if n == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	_, _, err := c.do(req, http.StatusCreated)
	return err
}

// pushBlob pushes b monolithically: POST /blobs/uploads/, then PUT with
// the whole body and ?digest=.
func (c *regClient) pushBlob(ctx context.Context, b []byte, digest string) error {
	loc, err := c.startUpload(ctx)
	if err != nil {
		return err
	}
	return c.finishUpload(ctx, loc, digest, bytes.NewReader(b), int64(len(b)))
}

// postBlob pushes b in one request: POST /blobs/uploads/?digest=.
func (c *regClient) postBlob(ctx context.Context, b []byte) (string, error) {
	d := sha256Digest(b)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/v2/"+c.repo+"/blobs/uploads/?digest="+d), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	_, _, err := c.do(req, http.StatusCreated)
	return d, err
}

// pushStream pushes n generated bytes: POST, then PATCHes of chunk bytes
// (chunk <= 0: one streamed PATCH of everything), then an empty PUT with
// the digest, computed while sending unless given (known: the sender does
// not hash, for a throughput figure of the server alone). It returns the
// digest and the final PUT's latency.
func (c *regClient) pushStream(ctx context.Context, seed uint64, n, chunk int64, known string) (string, time.Duration, error) {
	loc, err := c.startUpload(ctx)
	if err != nil {
		return "", 0, err
	}
	s := newStream(seed, n)
	if known != "" {
		s = newRawStream(seed, n)
	}
	if chunk <= 0 || chunk > n {
		chunk = n
	}
	for off := int64(0); off < n; {
		k := min(chunk, n-off)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), io.LimitReader(s, k))
		req.ContentLength = k
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+k-1, 10))
		_, h, err := c.do(req, http.StatusAccepted, http.StatusNoContent)
		if err != nil {
			return "", 0, err
		}
		if loc, err = c.resolve(h.Get("Location")); err != nil {
			return "", 0, err
		}
		off += k
	}
	if s.n != n {
		return "", 0, fmt.Errorf("sent %d of %d bytes", s.n, n)
	}
	d := known
	if d == "" {
		d = s.Sum()
	}
	t0 := time.Now()
	err = c.finishUpload(ctx, loc, d, nil, 0)
	return d, time.Since(t0), err
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

func (c *regClient) putManifest(ctx context.Context, ref string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, c.url("/v2/"+c.repo+"/manifests/"+ref), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	_, _, err := c.do(req, http.StatusCreated)
	return err
}

// manifestBody GETs a manifest's bytes (up to 4 MiB).
func (c *regClient) manifestBody(ctx context.Context, ref string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"+c.repo+"/manifests/"+ref), nil)
	req.Header.Set("Accept", manifestAccept)
	var b limitedBuffer
	b.left = 4 << 20
	_, _, err := c.fetch(req, &b, http.StatusOK)
	return b.Bytes(), err
}

func (c *regClient) getManifest(ctx context.Context, ref string) (*manifest, error) {
	body, err := c.manifestBody(ctx, ref)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", ref, err)
	}
	return &m, nil
}

// getBlob GETs a blob whole and checks its content against its digest;
// it returns the bytes read.
func (c *regClient) getBlob(ctx context.Context, digest string) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"+c.repo+"/blobs/"+digest), nil)
	h := sha256.New()
	n, _, err := c.fetch(req, h, http.StatusOK)
	if err == nil && "sha256:"+hexString(h.Sum(nil)) != digest {
		err = fmt.Errorf("blob %s: content does not match its digest", digest)
	}
	return n, err
}

// limitedBuffer keeps up to left bytes and fails beyond.
type limitedBuffer struct {
	bytes.Buffer
	left int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if len(p) > b.left {
		return 0, fmt.Errorf("response larger than the limit")
	}
	b.left -= len(p)
	return b.Buffer.Write(p)
}

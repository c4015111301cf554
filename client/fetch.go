package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// Progress receives download progress. Implementations must be safe for
// concurrent use.
type Progress interface {
	// Start is called when a blob's download starts; done bytes are
	// already there (a resumed partial file).
	Start(d digest.Digest, size, done int64)
	// Add reports n more bytes of d.
	Add(d digest.Digest, n int64)
	// Finish is called once per started blob.
	Finish(d digest.Digest, err error)
}

type blobJob struct {
	desc oci.Descriptor
	src  urlSource
	reg  *registry
	repo string
}

// maxRefreshes bounds re-resolutions for one blob download.
const maxRefreshes = 8

// fetchBlob downloads a blob to dst, verifying size and digest, through
// partial (resumed with Range when it holds bytes of an interrupted
// download). dst appears only complete and verified (rename).
func (c *Client) fetchBlob(ctx context.Context, j blobJob, dst, partial string) (err error) {
	d, size := j.desc.Digest, j.desc.Size
	if err := d.Validate(); err != nil {
		return fmt.Errorf("blob %q: %w", d, err)
	}
	if fi, err := os.Stat(dst); err == nil && fi.Size() == size {
		if verifyFile(dst, d) == nil {
			c.stats.skipped.Add(1)
			return nil
		}
	}
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	h := d.Algorithm().Hash()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if off > size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		off = 0
	}
	if off > 0 {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(h, f, off); err != nil {
			return err
		}
		c.stats.resumed.Add(1)
		c.logf("%s: resuming at byte %d of %d", short(d), off, size)
	}
	if p := c.opts.Progress; p != nil {
		p.Start(d, size, off)
		defer func() { p.Finish(d, err) }()
	}
	failures, refreshes := 0, 0
	fail := func(e error) error {
		failures++
		if failures > c.opts.Retries {
			return fmt.Errorf("blob %s: %w", short(d), e)
		}
		c.stats.retries.Add(1)
		c.logf("%s: %v; retrying", short(d), e)
		return c.sleep(ctx, backoff(failures-1))
	}
	for off < size {
		t, err := j.src.url(ctx, d, size-off)
		if err != nil {
			return err
		}
		resp, err := c.getBlob(ctx, j, t, off)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fail(err); err != nil {
				return err
			}
			continue
		}
		if expired, why := refusedAsExpired(resp, t, j.reg); expired {
			if c.opts.DisableReResolve {
				return fmt.Errorf("blob %s: %w: %s", short(d), ErrURLExpired, why)
			}
			refreshes++
			if refreshes > maxRefreshes {
				return fmt.Errorf("blob %s: %w after %d fresh URLs: %s", short(d), ErrURLExpired, maxRefreshes, why)
			}
			c.logf("%s: URL refused (%s); re-resolving, continuing at byte %d", short(d), why, off)
			if err := j.src.refresh(ctx, t); err != nil {
				return fmt.Errorf("blob %s: %w", short(d), err)
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			wait := retryAfter(resp.Header.Get("Retry-After"), backoff(failures))
			drain(resp)
			failures++
			if failures > c.opts.Retries {
				return fmt.Errorf("blob %s: 429 Too Many Requests", short(d))
			}
			c.stats.retries.Add(1)
			if err := c.sleep(ctx, wait); err != nil {
				return err
			}
			continue
		case resp.StatusCode >= 500:
			e := fmt.Errorf("%s: %s", resp.Status, readSome(resp))
			if err := fail(e); err != nil {
				return err
			}
			continue
		case resp.StatusCode == http.StatusOK:
			if off > 0 { // Range ignored: start over
				c.logf("%s: server ignored Range; downloading again", short(d))
				if err := f.Truncate(0); err != nil {
					resp.Body.Close()
					return err
				}
				h.Reset()
				off = 0
			}
		case resp.StatusCode == http.StatusPartialContent:
			if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != off {
				drain(resp)
				if err := fail(fmt.Errorf("Content-Range %q, want start %d", resp.Header.Get("Content-Range"), off)); err != nil {
					return err
				}
				continue
			}
		default:
			return fmt.Errorf("GET blob %s: %s: %s", d, resp.Status, readSome(resp))
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			resp.Body.Close()
			return err
		}
		start := c.opts.Now()
		want := size - off
		w := io.MultiWriter(f, h, progressWriter{c.opts.Progress, d})
		n, cerr := io.Copy(w, io.LimitReader(resp.Body, want))
		resp.Body.Close()
		off += n
		c.stats.bytes.Add(n)
		c.observe(n, c.opts.Now().Sub(start))
		if cerr == nil && n < want {
			cerr = io.ErrUnexpectedEOF
		}
		if cerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fail(fmt.Errorf("interrupted at byte %d: %w", off, cerr)); err != nil {
				return err
			}
			if off < size {
				c.stats.resumed.Add(1)
			}
			continue
		}
	}
	if got := digest.NewDigestFromEncoded(d.Algorithm(), fmt.Sprintf("%x", h.Sum(nil))); got != d {
		// a corrupt download is never kept, nor resumed from
		_ = f.Truncate(0)
		return fmt.Errorf("blob %s: content has digest %s", d, got)
	}
	// No fsync by default (Options.Fsync): a blob torn by a crash is caught
	// by the digest check every kept blob gets before it is reused.
	if c.opts.Fsync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	f = nil
	if err := os.Rename(partial, dst); err != nil {
		return err
	}
	c.stats.blobs.Add(1)
	return nil
}

// getBlob sends one GET for t from byte off.
func (c *Client) getBlob(ctx context.Context, j blobJob, t target, off int64) (*http.Response, error) {
	h := http.Header{}
	if off > 0 {
		h.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	if t.registry {
		return j.reg.do(ctx, request{method: http.MethodGet, path: t.url, header: h, scopes: pullScope(j.repo), noRetry: true})
	}
	// a signed URL carries its own credential: nothing else is sent
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header = h
	req.Header.Set("User-Agent", c.opts.UserAgent)
	return c.http.Do(req)
}

// refusedAsExpired reports whether storage refused a URL: 401/403 from a
// signed URL or a redirect target, or an S3-style "Request has expired".
// It consumes the body when it says yes.
func refusedAsExpired(resp *http.Response, t target, reg *registry) (bool, string) {
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusBadRequest {
		return false, ""
	}
	fromStorage := !t.registry || (reg != nil && resp.Request != nil && resp.Request.URL.Host != reg.host)
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	body := string(b)
	s3Expired := strings.Contains(body, "<Code>AccessDenied</Code>") && strings.Contains(body, "expired") ||
		strings.Contains(body, "<Code>ExpiredToken</Code>") || strings.Contains(body, "Request has expired")
	why := fmt.Sprintf("%s: %.200s", resp.Status, strings.TrimSpace(body))
	if s3Expired || (fromStorage && resp.StatusCode != http.StatusBadRequest) {
		return true, why
	}
	// not an expiry: give the caller the body back for its message
	resp.Body = io.NopCloser(strings.NewReader(body))
	return false, ""
}

func contentRangeStart(h string) (int64, bool) {
	// "bytes 100-199/200"
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

type progressWriter struct {
	p Progress
	d digest.Digest
}

func (w progressWriter) Write(b []byte) (int, error) {
	if w.p != nil {
		w.p.Add(w.d, int64(len(b)))
	}
	return len(b), nil
}

func verifyFile(path string, d digest.Digest) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, f); err != nil {
		return err
	}
	if !v.Verified() {
		return fmt.Errorf("%s: content does not match %s", path, d)
	}
	return nil
}

func short(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// runJobs runs fn for every job with at most n at once; the first error
// cancels the rest.
func runJobs[T any](parent context.Context, n int, jobs []T, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	ch := make(chan T)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(n, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				if err := fn(ctx, j); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first == nil {
		first = parent.Err()
	}
	return first
}

package registry

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// blobFetch is one upstream blob fetch in flight. The body goes into the
// blob store (verified, then committed) and, as it arrives, into a spool
// file that every client asking for the blob meanwhile reads as it
// grows: the first client does not wait for the whole blob, and the
// others cost no second upstream request. The spool is unlinked at once
// (a crash leaves nothing) and closed with its last reader.
type blobFetch struct {
	ready chan struct{} // closed once size is known, or the fetch ended before the body
	size  int64         // upstream's Content-Length; -1: it did not say
	// stored: the blob was already here when the fetch began (another
	// fetch stored it after our caller looked); read it from the store.
	stored bool

	mu      sync.Mutex
	cond    *sync.Cond
	spool   *os.File
	written int64
	done    bool
	err     error // the fetch's end: nil is stored
	refs    int   // the fetch itself and each reader
}

// Write appends upstream's bytes to the spool and wakes the readers.
func (f *blobFetch) Write(p []byte) (int, error) {
	n, err := f.spool.Write(p)
	f.mu.Lock()
	f.written += int64(n)
	f.cond.Broadcast()
	f.mu.Unlock()
	return n, err
}

func (f *blobFetch) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	f.cond.Broadcast()
	f.mu.Unlock()
	f.release()
}

func (f *blobFetch) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs--; f.refs == 0 && f.spool != nil {
		f.spool.Close()
	}
}

// wait blocks until the fetch ended and returns its error.
func (f *blobFetch) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, f.wake)
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.done {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return f.err
}

func (f *blobFetch) wake() {
	f.mu.Lock()
	f.cond.Broadcast()
	f.mu.Unlock()
}

// joinFetch returns the fetch of d into repo, starting it if none runs,
// with a reference the caller must release. The fetch itself runs
// detached from the caller: one client leaving fails no other, and the
// blob is cached anyway.
func (r *Registry) joinFetch(ctx context.Context, repo string, rt ProxyRoute, d digest.Digest) *blobFetch {
	key := repo + "\x00" + d.String()
	p := r.proxy
	p.mu.Lock()
	if f, ok := p.fetches[key]; ok {
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		p.mu.Unlock()
		r.proxyEvent(ProxyCoalesced)
		return f
	}
	f := &blobFetch{ready: make(chan struct{}), size: -1, refs: 2}
	f.cond = sync.NewCond(&f.mu)
	p.fetches[key] = f
	p.mu.Unlock()
	r.proxyEvent(ProxyMiss)
	go func() {
		err := r.runFetch(context.WithoutCancel(ctx), repo, rt, d, f)
		p.mu.Lock()
		delete(p.fetches, key) // stored or failed: the next request looks again
		p.mu.Unlock()
		f.finish(err)
	}()
	return f
}

// runFetch fetches d from upstream into the store and f's spool.
func (r *Registry) runFetch(ctx context.Context, repo string, rt ProxyRoute, d digest.Digest, f *blobFetch) error {
	started := false
	defer func() {
		if !started {
			close(f.ready)
		}
	}()
	if _, err := r.statBlob(ctx, repo, d); err == nil {
		f.stored = true
		return nil
	}
	rc, size, err := rt.Upstream.Blob(ctx, rt.Repo, d)
	if err != nil {
		return r.upstreamError(err, oci.ErrBlobUnknown.WithDetail(map[string]string{"digest": d.String()}))
	}
	defer rc.Close()
	spool, err := os.CreateTemp(r.opts.SpoolDir, "wharf-fetch-*")
	if err != nil {
		return internal("pull-through cache spool", err)
	}
	_ = os.Remove(spool.Name()) // open until its last reader closes it; gone at a crash
	f.spool, f.size = spool, size
	started = true
	close(f.ready)
	_, err = r.putBlob(ctx, repo, d, Chunk{Body: io.TeeReader(rc, f), Start: -1, Length: size})
	var ue *UpstreamError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, oci.ErrDigestInvalid):
		return r.corrupt(rt, "blob", d, err) // what upstream sent is not the blob: nothing is kept
	case errors.As(err, &ue): // the stream failed midway (a cut connection, a silent upstream)
		return r.upstreamError(ue, nil)
	}
	return err
}

// fetchBlob makes sure d is stored in repo, fetching it from upstream
// (or waiting on the fetch that runs).
func (r *Registry) fetchBlob(ctx context.Context, repo string, rt ProxyRoute, d digest.Digest) error {
	f := r.joinFetch(ctx, repo, rt, d)
	defer f.release()
	return f.wait(ctx)
}

// streamBlob answers a GET of a blob that is not cached yet: it reads
// the fetch's spool as it grows. When upstream did not say the size (no
// Content-Length to answer with), it waits for the fetch to end and reads
// the stored blob.
func (r *Registry) streamBlob(ctx context.Context, repo string, rt ProxyRoute, d digest.Digest) (BlobInfo, ReadSeekCloser, error) {
	f := r.joinFetch(ctx, repo, rt, d)
	select {
	case <-f.ready:
	case <-ctx.Done():
		f.release()
		return BlobInfo{}, nil, ctx.Err()
	}
	if f.spool == nil || f.size < 0 {
		err := f.wait(ctx)
		f.release()
		if err != nil {
			return BlobInfo{}, nil, err
		}
		info, err := r.statBlob(ctx, repo, d)
		if err != nil {
			return info, nil, err
		}
		return r.openStored(ctx, repo, info)
	}
	return BlobInfo{Digest: d, Size: f.size}, &spoolReader{f: f, ctx: ctx}, nil
}

// statFetch answers a HEAD (or the stat before a redirect) of a blob that
// is not cached yet: it starts the fetch and answers as soon as upstream
// said the size; the fetch goes on without the caller.
func (r *Registry) statFetch(ctx context.Context, repo string, rt ProxyRoute, d digest.Digest) (BlobInfo, error) {
	f := r.joinFetch(ctx, repo, rt, d)
	defer f.release()
	select {
	case <-f.ready:
	case <-ctx.Done():
		return BlobInfo{}, ctx.Err()
	}
	if f.spool != nil && f.size >= 0 {
		return BlobInfo{Digest: d, Size: f.size}, nil // no Key: not stored yet, not signable
	}
	if err := f.wait(ctx); err != nil {
		return BlobInfo{}, err
	}
	return r.statBlob(ctx, repo, d)
}

// spoolReader reads a fetch's spool up to what has arrived. The last byte
// is held back until the blob is verified and stored: a client never
// receives a whole body that does not hash to its digest (a failed fetch
// ends its response short instead).
type spoolReader struct {
	f   *blobFetch
	ctx context.Context
	off int64
}

func (s *spoolReader) Read(p []byte) (int, error) {
	f := s.f
	if s.off >= f.size {
		if err := f.wait(s.ctx); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	stop := context.AfterFunc(s.ctx, f.wake)
	defer stop()
	f.mu.Lock()
	var avail int64
	for {
		if f.err != nil {
			f.mu.Unlock()
			return 0, f.err
		}
		avail = f.written
		if !f.done && avail >= f.size {
			avail = f.size - 1
		}
		if avail > s.off {
			break
		}
		if err := s.ctx.Err(); err != nil {
			f.mu.Unlock()
			return 0, err
		}
		f.cond.Wait()
	}
	f.mu.Unlock()
	if int64(len(p)) > avail-s.off {
		p = p[:avail-s.off]
	}
	n, err := f.spool.ReadAt(p, s.off)
	s.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (s *spoolReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.f.size
	}
	if offset < 0 {
		return 0, errors.New("spool: negative position")
	}
	s.off = offset
	return offset, nil
}

func (s *spoolReader) Close() error {
	s.f.release()
	return nil
}

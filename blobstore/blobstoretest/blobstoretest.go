// Package blobstoretest is the contract every registry.BlobStore must
// meet. Each backend's tests call Run with a constructor for a fresh store,
// so the filesystem and object-storage backends pass one suite.
package blobstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
)

// Run runs the contract against stores made by newStore. reopen, if not
// nil, returns a new store over the same backing storage, to show that an
// upload continues after a restart.
func Run(t *testing.T, newStore func(t *testing.T) registry.BlobStore, reopen func(t *testing.T, s registry.BlobStore) registry.BlobStore) {
	t.Run("ChunkSizes", func(t *testing.T) { testChunkSizes(t, newStore(t)) })
	t.Run("TruncatesUnrecordedTail", func(t *testing.T) { testTruncate(t, newStore(t)) })
	t.Run("TruncatesUnrecordedPart", func(t *testing.T) { testTruncatePart(t, newStore(t)) })
	t.Run("TinyChunksAcrossPartBoundary", func(t *testing.T) { testTinyChunks(t, newStore(t)) })
	t.Run("Reader", func(t *testing.T) { testReader(t, newStore(t)) })
	t.Run("CommitIsIdempotent", func(t *testing.T) { testCommitTwice(t, newStore(t)) })
	t.Run("ConcurrentIdenticalUploads", func(t *testing.T) { testConcurrentIdentical(t, newStore(t)) })
	t.Run("AbortAndDelete", func(t *testing.T) { testAbortDelete(t, newStore(t)) })
	t.Run("CommitNeverReplacesABlob", func(t *testing.T) { testNoOverwrite(t, newStore(t)) })
	t.Run("LockAndRelock", func(t *testing.T) { testLock(t, newStore(t)) })
	t.Run("CutBodyFails", func(t *testing.T) { testCutBody(t, newStore(t)) })
	t.Run("OpenMissing", func(t *testing.T) {
		if _, err := newStore(t).Open(context.Background(), "blobs/sha256/00/"+string(bytes.Repeat([]byte("0"), 64))); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
		}
	})
	if reopen != nil {
		t.Run("ResumeAfterRestart", func(t *testing.T) { testResume(t, newStore(t), reopen) })
	}
}

var ids struct {
	mu sync.Mutex
	n  int
}

func newUpload(t *testing.T, s registry.BlobStore) *registry.Upload {
	t.Helper()
	ids.mu.Lock()
	ids.n++
	id := fmt.Sprintf("contract-%d-%d", time.Now().UnixNano(), ids.n)
	ids.mu.Unlock()
	u := &registry.Upload{ID: id, Repo: "contract/test", HashAlg: digest.SHA256, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := s.Uploads().Begin(context.Background(), u); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return u
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func appendAll(t *testing.T, s registry.BlobStore, u *registry.Upload, data []byte, chunk int) {
	t.Helper()
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		n, err := s.Uploads().Append(context.Background(), u, bytes.NewReader(data[off:end]))
		if err != nil {
			t.Fatalf("Append at %d: %v", off, err)
		}
		if n != int64(end-off) {
			t.Fatalf("Append wrote %d, want %d", n, end-off)
		}
		u.Offset += n
	}
}

func commitAndCheck(t *testing.T, s registry.BlobStore, u *registry.Upload, want []byte) string {
	t.Helper()
	d := digest.FromBytes(want)
	key, err := s.Uploads().Commit(context.Background(), u, d)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := readBlob(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("blob %s: read %d bytes that differ from the %d written", key, len(got), len(want))
	}
	// Seekable, for Range requests.
	if len(want) > 10 {
		f, err := s.Open(context.Background(), key)
		if err != nil {
			t.Fatalf("Open(%s): %v", key, err)
		}
		defer f.Close()
		if _, err := f.Seek(5, io.SeekStart); err != nil {
			t.Fatalf("Seek: %v", err)
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(f, b); err != nil || !bytes.Equal(b, want[5:10]) {
			t.Fatalf("read after Seek = %q, %v", b, err)
		}
	}
	return key
}

// readBlob is the content of the stored blob key.
func readBlob(t *testing.T, s registry.BlobStore, key string) []byte {
	t.Helper()
	f, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return got
}

// checkReader: the session's Reader reads back data.
func checkReader(t *testing.T, s registry.BlobStore, u *registry.Upload, data []byte) {
	t.Helper()
	rd, err := s.Uploads().Reader(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Reader: %d bytes, err %v", len(got), err)
	}
}

func testChunkSizes(t *testing.T, s registry.BlobStore) {
	for _, c := range []struct{ size, chunk int }{
		{0, 1}, {1, 1}, {7, 1}, {4<<20 + 1, 1 << 20}, {5 << 20, 5 << 20}, {17 << 20, 4<<20 + 1},
	} {
		t.Run(fmt.Sprintf("%d/%d", c.size, c.chunk), func(t *testing.T) {
			u := newUpload(t, s)
			data := randomBytes(c.size)
			appendAll(t, s, u, data, c.chunk)
			commitAndCheck(t, s, u, data)
		})
	}
}

// testTruncate: bytes written past the recorded offset (a write cut off by
// a crash before it was recorded) are dropped by the next Append.
func testTruncate(t *testing.T, s registry.BlobStore) {
	u := newUpload(t, s)
	data := randomBytes(3000)
	appendAll(t, s, u, data[:1000], 1000)
	// A write that "crashed": the store got the bytes, the offset did not move.
	if _, err := s.Uploads().Append(context.Background(), u, bytes.NewReader(randomBytes(500))); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, u, data[1000:], 2000)
	commitAndCheck(t, s, u, data)
}

// testTruncatePart: an unrecorded write that crossed S3's 5 MiB part
// boundary (so a backend may have flushed a part) is dropped too.
func testTruncatePart(t *testing.T, s registry.BlobStore) {
	u := newUpload(t, s)
	data := randomBytes(7 << 20)
	appendAll(t, s, u, data[:5<<20-10], 5<<20-10)
	if _, err := s.Uploads().Append(context.Background(), u, bytes.NewReader(randomBytes(1<<20))); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, u, data[5<<20-10:], 1<<20)
	commitAndCheck(t, s, u, data)
}

// testTinyChunks: 1-byte chunks (any size is legal in OCI) across the
// 5 MiB minimum part size of S3, with a Reader check on the way.
func testTinyChunks(t *testing.T, s registry.BlobStore) {
	u := newUpload(t, s)
	data := randomBytes(5<<20 + 4096)
	appendAll(t, s, u, data[:5<<20-20], 5<<20-20)
	appendAll(t, s, u, data[5<<20-20:5<<20+20], 1)
	appendAll(t, s, u, data[5<<20+20:], 1000)
	checkReader(t, s, u, data)
	commitAndCheck(t, s, u, data)
}

// testCommitTwice: when the metadata commit after Commit fails, the
// client's retry commits the same session again and must get the blob.
func testCommitTwice(t *testing.T, s registry.BlobStore) {
	for _, size := range []int{0, 1000, 5<<20 + 1000} { // empty, one tail, parts and a tail
		u := newUpload(t, s)
		data := randomBytes(size)
		appendAll(t, s, u, data, 1<<20)
		first := commitAndCheck(t, s, u, data)
		if again := commitAndCheck(t, s, u, data); again != first {
			t.Fatalf("size %d: second Commit returned %q, first %q", size, again, first)
		}
	}
}

func testReader(t *testing.T, s registry.BlobStore) {
	u := newUpload(t, s)
	data := randomBytes(10000)
	appendAll(t, s, u, data, 3333)
	checkReader(t, s, u, data)
}

func testConcurrentIdentical(t *testing.T, s registry.BlobStore) {
	data := randomBytes(1 << 20)
	const n = 4
	keys := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		u := newUpload(t, s)
		wg.Go(func() {
			_, err := s.Uploads().Append(context.Background(), u, bytes.NewReader(data))
			if err != nil {
				t.Errorf("Append: %v", err)
				return
			}
			u.Offset = int64(len(data))
			keys[i], err = s.Uploads().Commit(context.Background(), u, digest.FromBytes(data))
			if err != nil {
				t.Errorf("Commit: %v", err)
			}
		})
	}
	wg.Wait()
	for _, k := range keys {
		if got := readBlob(t, s, k); !bytes.Equal(got, data) {
			t.Fatalf("blob %s corrupted by concurrent identical uploads", k)
		}
	}
}

func testAbortDelete(t *testing.T, s registry.BlobStore) {
	ctx := context.Background()
	u := newUpload(t, s)
	appendAll(t, s, u, randomBytes(100), 100)
	if err := s.Uploads().Abort(ctx, u); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := s.Uploads().Abort(ctx, u); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if _, err := s.Uploads().Append(ctx, u, bytes.NewReader([]byte("x"))); err == nil {
		t.Fatal("Append after Abort succeeded")
	}
	u2 := newUpload(t, s)
	data := randomBytes(64)
	appendAll(t, s, u2, data, 64)
	key := commitAndCheck(t, s, u2, data)
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete of a missing object: %v", err)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
	}
}

func testResume(t *testing.T, s registry.BlobStore, reopen func(*testing.T, registry.BlobStore) registry.BlobStore) {
	u := newUpload(t, s)
	data := randomBytes(6 << 20)
	appendAll(t, s, u, data[:5<<20], 5<<20)
	saved := *u // what the metadata store would have persisted
	s2 := reopen(t, s)
	u2 := saved
	appendAll(t, s2, &u2, data[5<<20:6<<20-5], 1<<20)
	// Several restarts in the middle of a tail made of small chunks.
	for i := 5; i > 0; i-- {
		saved = u2
		s2 = reopen(t, s2)
		u2 = saved
		appendAll(t, s2, &u2, data[6<<20-i:6<<20-i+1], 1)
	}
	commitAndCheck(t, s2, &u2, data)
}

// testNoOverwrite: a session that claims a digest its bytes do not have
// (the registry checks the hash state, a store never re-reads) cannot
// change the bytes served for a blob already committed under it.
func testNoOverwrite(t *testing.T, s registry.BlobStore) {
	good := randomBytes(3000)
	u := newUpload(t, s)
	appendAll(t, s, u, good, 3000)
	key := commitAndCheck(t, s, u, good)

	bad := newUpload(t, s)
	appendAll(t, s, bad, randomBytes(3000), 3000)
	if _, err := s.Uploads().Commit(context.Background(), bad, digest.FromBytes(good)); err != nil {
		t.Fatalf("second Commit of the same digest: %v", err)
	}
	if got := readBlob(t, s, key); !bytes.Equal(got, good) {
		t.Fatalf("blob %s replaced by another session's commit", key)
	}
}

// testLock: a session can be locked, released and locked again, and a
// session committed or aborted can be locked (there is nothing to guard).
func testLock(t *testing.T, s registry.BlobStore) {
	ctx := context.Background()
	u := newUpload(t, s)
	for range 2 {
		unlock, err := s.Uploads().Lock(ctx, u)
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		appendAll(t, s, u, []byte("locked bytes"), 4)
		unlock()
	}
	commitAndCheck(t, s, u, []byte("locked byteslocked bytes"))
	unlock, err := s.Uploads().Lock(ctx, u)
	if err != nil {
		t.Fatalf("Lock after Commit: %v", err)
	}
	unlock()
}

// cutReader yields its bytes, then fails as a request body cut off
// mid-chunk does (net/http: io.ErrUnexpectedEOF).
type cutReader struct{ b []byte }

func (c *cutReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, c.b)
	c.b = c.b[n:]
	return n, nil
}

// testCutBody: an Append whose body breaks off fails (the registry then
// records nothing), whether the chunk would have been a tail or crossed
// a part boundary; the session goes on from where it was.
func testCutBody(t *testing.T, s registry.BlobStore) {
	u := newUpload(t, s)
	data := randomBytes(6 << 20)
	appendAll(t, s, u, data[:1000], 1000)
	for _, n := range []int{500, 6 << 20} {
		if _, err := s.Uploads().Append(context.Background(), u, &cutReader{b: randomBytes(n)}); err == nil {
			t.Fatalf("Append of a body cut after %d bytes succeeded", n)
		}
	}
	appendAll(t, s, u, data[1000:], 1<<20)
	commitAndCheck(t, s, u, data)
}

package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/blobstoretest"
	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/registry"
)

func randHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newStore(t testing.TB, m *miniotest.Server, prefix string) *s3.Store {
	t.Helper()
	return newStoreWith(t, m, prefix, func(*s3.Options) {})
}

// newStoreWith is newStore with the options edited first.
func newStoreWith(t testing.TB, m *miniotest.Server, prefix string, edit func(*s3.Options)) *s3.Store {
	t.Helper()
	o := s3.Options{
		Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: prefix,
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: s3.MinPartSize,
	}
	edit(&o)
	s, err := s3.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runContract runs the blob store contract on m, each store under a fresh
// prefix and built with edit.
func runContract(t *testing.T, m *miniotest.Server, edit func(*s3.Options)) {
	var mu sync.Mutex
	prefixes := map[registry.BlobStore]string{}
	open := func(t *testing.T, prefix string) registry.BlobStore {
		s := newStoreWith(t, m, prefix, edit)
		mu.Lock()
		prefixes[s] = prefix
		mu.Unlock()
		return s
	}
	blobstoretest.Run(t,
		func(t *testing.T) registry.BlobStore { return open(t, "c-"+randHex()+"/") },
		// A restart: a new store (new client, nothing shared) over the
		// same bucket and prefix, continuing from the persisted Upload.
		func(t *testing.T, s registry.BlobStore) registry.BlobStore {
			mu.Lock()
			p := prefixes[s]
			mu.Unlock()
			return open(t, p)
		},
	)
}

// eachServer runs f against a fresh server of every kind (MinIO and
// SeaweedFS), each a subtest named by its kind.
func eachServer(t *testing.T, f func(t *testing.T, m *miniotest.Server)) {
	for _, k := range miniotest.Kinds {
		t.Run(string(k), func(t *testing.T) { f(t, miniotest.StartKind(t, k)) })
	}
}

func TestContract(t *testing.T) {
	eachServer(t, func(t *testing.T, m *miniotest.Server) { runContract(t, m, func(*s3.Options) {}) })
	// Everything the contract committed or aborted left no multipart
	// upload behind... except sessions the contract never finished; those
	// are what ExpireUploads aborts, which TestAbortLeavesNothing covers.
}

func listMPUs(t *testing.T, c *awss3.Client, bucket, prefix string) []string {
	t.Helper()
	out, err := c.ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key)+"#"+aws.ToString(u.UploadId))
	}
	return keys
}

func begin(t *testing.T, s *s3.Store) *registry.Upload {
	t.Helper()
	u := &registry.Upload{ID: "u" + randHex() + randHex(), HashAlg: digest.SHA256}
	if err := s.Begin(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func appendChunks(t *testing.T, s *s3.Store, u *registry.Upload, data []byte, chunk int) {
	t.Helper()
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		n, err := s.Append(context.Background(), u, bytes.NewReader(data[off:end]))
		if err != nil {
			t.Fatal(err)
		}
		u.Offset += n
	}
}

// TestAbortLeavesNothing: an aborted session (a DELETE, or ExpireUploads
// after limits.upload_max_age) leaves no multipart upload and no tail
// objects, including a multipart upload created by a request whose state
// was never recorded.
func TestAbortLeavesNothing(t *testing.T) { eachServer(t, testAbortLeavesNothing) }

func testAbortLeavesNothing(t *testing.T, m *miniotest.Server) {
	s := newStore(t, m, "abort/")
	c := m.Client()
	u := begin(t, s)
	data := make([]byte, 6<<20+123)
	_, _ = rand.Read(data)
	appendChunks(t, s, u, data, 1<<20) // one part flushed, a tail of segments
	// A stray multipart upload at the same key (a replica that died
	// between creating one and recording it).
	key := s.BlobKey(u.ID)
	if _, err := c.CreateMultipartUpload(context.Background(), &awss3.CreateMultipartUploadInput{Bucket: &m.Bucket, Key: &key}); err != nil {
		t.Fatal(err)
	}
	// (MinIO lists multipart uploads only for an exact object key.)
	if got := listMPUs(t, c, m.Bucket, key); len(got) != 2 {
		t.Fatalf("multipart uploads before abort: %v", got)
	}
	if got := m.Keys(t, "abort/uploads/"); len(got) == 0 {
		t.Fatal("expected tail segments before abort")
	}
	if err := s.Abort(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	if got := listMPUs(t, c, m.Bucket, key); len(got) != 0 {
		t.Fatalf("multipart uploads left after Abort: %v", got)
	}
	if got := m.Keys(t, "abort/"); len(got) != 0 {
		t.Fatalf("objects left after Abort: %v", got)
	}
}

// TestAbortAfterUnrecordedCommit: a session whose Commit succeeded but
// whose metadata commit failed still has its row; when it expires, Abort
// removes the completed object too, so nothing leaks.
func TestAbortAfterUnrecordedCommit(t *testing.T) { eachServer(t, testAbortAfterUnrecordedCommit) }

func testAbortAfterUnrecordedCommit(t *testing.T, m *miniotest.Server) {
	s := newStore(t, m, "unrecorded/")
	for _, size := range []int{100, 6<<20 + 5} {
		u := begin(t, s)
		data := make([]byte, size)
		_, _ = rand.Read(data)
		appendChunks(t, s, u, data, 1<<20)
		if _, err := s.Commit(context.Background(), u, digest.FromBytes(data)); err != nil {
			t.Fatal(err)
		}
		if got := m.Keys(t, "unrecorded/"); len(got) != 1 {
			t.Fatalf("size %d: after Commit: %v, want the blob alone", size, got)
		}
		if err := s.Abort(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		if got := m.Keys(t, "unrecorded/"); len(got) != 0 {
			t.Fatalf("size %d: left after Abort: %v", size, got)
		}
	}
}

// TestCommitLeavesOnlyTheBlob: after Commit the blob is at the session's
// own key (no copy to a content address) and nothing else remains.
func TestCommitLeavesOnlyTheBlob(t *testing.T) { eachServer(t, testCommitLeavesOnlyTheBlob) }

func testCommitLeavesOnlyTheBlob(t *testing.T, m *miniotest.Server) {
	s := newStore(t, m, "commit/")
	c := m.Client()
	for _, size := range []int{0, 100, 5 << 20, 11<<20 + 7} {
		u := begin(t, s)
		data := make([]byte, size)
		_, _ = rand.Read(data)
		appendChunks(t, s, u, data, 3<<20)
		key, err := s.Commit(context.Background(), u, digest.FromBytes(data))
		if err != nil {
			t.Fatal(err)
		}
		if key != s.BlobKey(u.ID) {
			t.Fatalf("key %q, want the session's own %q", key, s.BlobKey(u.ID))
		}
		if got := m.Keys(t, "commit/uploads/"); len(got) != 0 {
			t.Fatalf("size %d: objects left under uploads/: %v", size, got)
		}
		if got := listMPUs(t, c, m.Bucket, key); len(got) != 0 {
			t.Fatalf("size %d: multipart uploads left: %v", size, got)
		}
		f, err := s.Open(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, err %v", size, len(got), err)
		}
	}
}

func TestRangeReads(t *testing.T) { eachServer(t, testRangeReads) }

func testRangeReads(t *testing.T, m *miniotest.Server) {
	s := newStore(t, m, "range/")
	u := begin(t, s)
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	appendChunks(t, s, u, data, len(data))
	key, err := s.Commit(context.Background(), u, digest.FromBytes(data))
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, _ := f.Seek(0, io.SeekEnd); n != int64(len(data)) {
		t.Fatalf("size %d", n)
	}
	for _, off := range []int64{1000, 10, 1<<20 - 3} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 3)
		if _, err := io.ReadFull(f, b); err != nil || !bytes.Equal(b, data[off:off+3]) {
			t.Fatalf("at %d: %x %v", off, b, err)
		}
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	bad, _ := s3.New(context.Background(), s3.Options{Endpoint: m.Endpoint, Bucket: "no-such-bucket", AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true})
	if err := bad.Ping(context.Background()); err == nil {
		t.Fatal("Ping of a missing bucket succeeded")
	}
}

// TestPresignedURLExpires: a pre-signed URL downloads the blob with no
// other credential, and once past its expiry MinIO itself refuses it.
func TestPresignedURLExpires(t *testing.T) { eachServer(t, testPresignedURLExpires) }

func testPresignedURLExpires(t *testing.T, m *miniotest.Server) {
	s := newStore(t, m, "presign/")
	u := begin(t, s)
	data := []byte("signed bytes")
	appendChunks(t, s, u, data, len(data))
	d := digest.FromBytes(data)
	key, err := s.Commit(context.Background(), u, d)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.SignBlob(context.Background(), registry.BlobInfo{Digest: d, Size: int64(len(data)), Key: key}, time.Now().Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if signed.Expires.After(time.Now().Add(3 * time.Second)) {
		t.Fatalf("Expires %v is later than asked", signed.Expires)
	}
	get := func() (int, string) {
		resp, b := testhttp.Get(t, nil, signed.URL)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != string(data) {
		t.Fatalf("fresh URL: %d %q", code, body)
	}
	time.Sleep(time.Until(signed.Expires) + 1500*time.Millisecond)
	code, body := get()
	if code != http.StatusForbidden || !strings.Contains(body, "AccessDenied") || !strings.Contains(strings.ToLower(body), "expired") {
		t.Fatalf("expired URL: %d %s", code, body)
	}
}

// rotating is a credentials provider whose credentials can be swapped.
type rotating struct {
	mu sync.Mutex
	c  aws.Credentials
}

func (r *rotating) Retrieve(context.Context) (aws.Credentials, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c, nil
}

func (r *rotating) set(c aws.Credentials) {
	r.mu.Lock()
	r.c = c
	r.mu.Unlock()
}

// TestCredentialRotation: signatures are cached, but never across a
// credential rotation, and no URL outlives the credentials that signed it.
// (Pre-signing is offline: no server needed.)
func TestCredentialRotation(t *testing.T) {
	now := time.Now()
	creds := &rotating{c: aws.Credentials{AccessKeyID: "AKIA1", SecretAccessKey: "s1", SessionToken: "t1", CanExpire: true, Expires: now.Add(30 * time.Minute)}}
	s, err := s3.New(context.Background(), s3.Options{Endpoint: "http://127.0.0.1:1", Bucket: "b", Credentials: creds, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(nil, s, registry.Options{Signer: s})
	info := registry.BlobInfo{Digest: digest.FromString("x"), Size: 1, Key: "blobs/abc"}
	u1, ok, err := reg.SignBlobURL(context.Background(), info, 20*time.Minute)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	u2, _, _ := reg.SignBlobURL(context.Background(), info, 20*time.Minute)
	if u1.URL != u2.URL {
		t.Fatal("signature not cached")
	}
	if !strings.Contains(u1.URL, "X-Amz-Credential=AKIA1") {
		t.Fatalf("URL not signed with AKIA1: %s", u1.URL)
	}
	// Rotation: new temporary credentials expiring in 10 minutes.
	creds.set(aws.Credentials{AccessKeyID: "AKIA2", SecretAccessKey: "s2", SessionToken: "t2", CanExpire: true, Expires: now.Add(10 * time.Minute)})
	u3, _, err := reg.SignBlobURL(context.Background(), info, 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if u3.URL == u1.URL || !strings.Contains(u3.URL, "X-Amz-Credential=AKIA2") {
		t.Fatalf("served a signature made with rotated credentials: %s", u3.URL)
	}
	if u3.Expires.After(now.Add(10 * time.Minute)) {
		t.Fatalf("URL expires %v, after its credentials (%v)", u3.Expires, now.Add(10*time.Minute))
	}
	// Same key id, new secret and token (a re-issued session): also a miss.
	creds.set(aws.Credentials{AccessKeyID: "AKIA2", SecretAccessKey: "s3", SessionToken: "t3", CanExpire: true, Expires: now.Add(10 * time.Minute)})
	u4, _, _ := reg.SignBlobURL(context.Background(), info, 20*time.Minute)
	if u4.URL == u3.URL {
		t.Fatal("cached signature served after the session token changed")
	}
	// The 7-day cap.
	creds.set(aws.Credentials{AccessKeyID: "AKIA3", SecretAccessKey: "s"})
	long, err := s.SignBlob(context.Background(), info, now.Add(30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if long.Expires.After(time.Now().Add(s3.MaxPresignExpiry)) {
		t.Fatalf("expiry %v beyond S3's 7 days", long.Expires)
	}
	if !strings.Contains(long.URL, fmt.Sprintf("X-Amz-Expires=%d&", int(s3.MaxPresignExpiry/time.Second))) {
		t.Fatalf("URL %s", long.URL)
	}
}

// interval is one S3 request as the client saw it.
type interval struct {
	method, path string
	delete       bool // DeleteObject, or DeleteObjects (POST ?delete)
	start, end   time.Time
}

// recorder is an http.RoundTripper that records every request's interval.
type recorder struct {
	mu  sync.Mutex
	log []interval
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	iv := interval{method: req.Method, path: req.URL.Path, start: time.Now(),
		delete: req.Method == http.MethodDelete || (req.Method == http.MethodPost && req.URL.Query().Has("delete"))}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		// The request ends when its response has been read.
		resp.Body = &endOnClose{ReadCloser: resp.Body, done: func() {
			iv.end = time.Now()
			r.mu.Lock()
			r.log = append(r.log, iv)
			r.mu.Unlock()
		}}
	}
	return resp, err
}

type endOnClose struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (e *endOnClose) Close() error {
	err := e.ReadCloser.Close()
	e.once.Do(e.done)
	return err
}

// TestTailGarbageNeverRacesAPut: the tail segments a part consumed are
// deleted only when no write into the session's directory is in flight.
// A single-drive MinIO removes a directory with its last object, and a
// PUT racing that removal fails with AccessDenied: CI saw it once, on the
// Append right after a part boundary, when the deletion ran in the
// background beside that Append's own PUT.
func TestTailGarbageNeverRacesAPut(t *testing.T) { eachServer(t, testTailGarbageNeverRacesAPut) }

func testTailGarbageNeverRacesAPut(t *testing.T, m *miniotest.Server) {
	rec := &recorder{}
	s, err := s3.New(context.Background(), s3.Options{
		Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: "race/",
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: s3.MinPartSize,
		HTTPClient: &http.Client{Transport: rec},
	})
	if err != nil {
		t.Fatal(err)
	}
	u := begin(t, s)
	data := make([]byte, 2*s3.MinPartSize+100)
	_, _ = rand.Read(data)
	// A big segment, then one-byte Appends across the first part boundary
	// (tail rewrites on the way), then more up to the second one.
	appendChunks(t, s, u, data[:s3.MinPartSize-40], s3.MinPartSize-40)
	appendChunks(t, s, u, data[s3.MinPartSize-40:s3.MinPartSize+40], 1)
	appendChunks(t, s, u, data[s3.MinPartSize+40:], 1<<20)
	if _, err := s.Commit(context.Background(), u, digest.FromBytes(data)); err != nil {
		t.Fatal(err)
	}
	dir := "/" + m.Bucket + "/race/uploads/" + u.ID + "/"
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var deletes, puts []interval
	for _, iv := range rec.log {
		switch {
		case iv.delete:
			deletes = append(deletes, iv)
		case iv.method == http.MethodPut && strings.HasPrefix(iv.path, dir):
			puts = append(puts, iv)
		}
	}
	if len(deletes) == 0 || len(puts) < 20 {
		t.Fatalf("the upload did not exercise the case: %d deletes, %d tail PUTs", len(deletes), len(puts))
	}
	for _, d := range deletes {
		for _, p := range puts {
			if d.start.Before(p.end) && p.start.Before(d.end) {
				t.Fatalf("a delete of tail segments overlapped the PUT of %s", p.path)
			}
		}
	}
}

package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/registry"
)

// newStoreWith is newStore with options on top of the server's.
// commitBytes uploads data in chunks through a session and commits it.
func commitBytes(t *testing.T, s *s3.Store, data []byte, chunk int) (string, digest.Digest) {
	t.Helper()
	u := begin(t, s)
	appendChunks(t, s, u, data, chunk)
	d := digest.FromBytes(data)
	key, err := s.Commit(context.Background(), u, d)
	if err != nil {
		t.Fatal(err)
	}
	return key, d
}

func readAll(t *testing.T, s *s3.Store, key string) []byte {
	t.Helper()
	f, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return testhttp.ReadAll(t, f)
}

func httpGet(t *testing.T, rawURL string) (*http.Response, []byte) {
	t.Helper()
	return testhttp.Get(t, &http.Client{Timeout: 60 * time.Second}, rawURL)
}

// TestServerSideEncryption: with storage.s3.sse set, committed blobs,
// small (one PutObject) and multipart, are encrypted at rest as asked
// (HeadObject reports it, so does a tail segment of an open session), and
// read back intact through the store and through a pre-signed URL.
// Without it, the same server stores them unencrypted: the check can fail.
func TestServerSideEncryption(t *testing.T) {
	m := miniotest.StartWith(t, miniotest.Options{KMS: true})
	c := m.Client()
	for _, tc := range []struct {
		name, sse, kmsKey string
		want              types.ServerSideEncryption
	}{
		{"off", "", "", ""},
		{"sse-s3", s3.SSEAES256, "", types.ServerSideEncryptionAes256},
		{"sse-kms", s3.SSEKMS, m.KMSKeyName, types.ServerSideEncryptionAwsKms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := tc.name + "/"
			s := newStoreWith(t, m, prefix, func(o *s3.Options) { o.SSE, o.SSEKMSKeyID = tc.sse, tc.kmsKey })
			head := func(key string) *awss3.HeadObjectOutput {
				t.Helper()
				h, err := c.HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: &m.Bucket, Key: &key})
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			check := func(what, key string) {
				t.Helper()
				h := head(key)
				if h.ServerSideEncryption != tc.want {
					t.Errorf("%s: ServerSideEncryption %q, want %q", what, h.ServerSideEncryption, tc.want)
				}
				if tc.kmsKey != "" && !strings.Contains(aws.ToString(h.SSEKMSKeyId), tc.kmsKey) {
					t.Errorf("%s: SSEKMSKeyId %q, want key %q", what, aws.ToString(h.SSEKMSKeyId), tc.kmsKey)
				}
			}
			// A tail segment of an open session holds blob bytes too.
			u := begin(t, s)
			appendChunks(t, s, u, []byte("tail bytes"), 4)
			tails := m.Keys(t, prefix+"uploads/")
			if len(tails) == 0 {
				t.Fatal("no tail segments")
			}
			for _, k := range tails {
				check("tail segment", k)
			}
			if err := s.Abort(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{1000, 11<<20 + 7} { // one PutObject; three parts
				data := make([]byte, size)
				_, _ = rand.Read(data)
				key, d := commitBytes(t, s, data, 3<<20)
				check("blob", key)
				if got := readAll(t, s, key); !bytes.Equal(got, data) {
					t.Fatalf("size %d: store read back %d bytes that differ", size, len(got))
				}
				signed, err := s.SignBlob(context.Background(), registry.BlobInfo{Digest: d, Size: int64(size), Key: key}, time.Now().Add(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				resp, body := httpGet(t, signed.URL)
				if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
					t.Fatalf("size %d: pre-signed GET: %d, %d bytes (equal %v)", size, resp.StatusCode, len(body), bytes.Equal(body, data))
				}
			}
		})
	}
}

// TestContractWithSSE: the blob store contract holds with SSE-KMS on.
func TestContractWithSSE(t *testing.T) {
	m := miniotest.StartWith(t, miniotest.Options{KMS: true})
	runContract(t, m, func(o *s3.Options) { o.SSE, o.SSEKMSKeyID = s3.SSEKMS, m.KMSKeyName })
}

// TestSSEOptionsValidated: an unknown mode, or a KMS key without SSE-KMS,
// is refused when the store is built, not on the first upload.
func TestSSEOptionsValidated(t *testing.T) {
	for _, tc := range []struct{ sse, key, want string }{
		{"aes256", "", `"aes256"`},
		{"kms", "", `"kms"`},
		{"", "k1", "KMS key id"},
		{s3.SSEAES256, "k1", "KMS key id"},
	} {
		_, err := s3.New(context.Background(), s3.Options{Bucket: "b", AccessKey: "a", SecretKey: "s", SSE: tc.sse, SSEKMSKeyID: tc.key})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SSE %q key %q: error %v, want one mentioning %s", tc.sse, tc.key, err, tc.want)
		}
	}
	for _, sse := range []string{"", s3.SSEAES256, s3.SSEKMS} {
		if _, err := s3.New(context.Background(), s3.Options{Bucket: "b", AccessKey: "a", SecretKey: "s", SSE: sse}); err != nil {
			t.Errorf("SSE %q: %v", sse, err)
		}
	}
	if _, err := s3.New(context.Background(), s3.Options{Bucket: "b", AccessKey: "a", SecretKey: "s", PublicEndpoint: "s3.example.com"}); err == nil {
		t.Error("public endpoint without a scheme accepted")
	}
}

// TestPublicEndpoint: with a public endpoint the pre-signed URL is signed
// for that host (here localhost:PORT while the store talks to
// 127.0.0.1:PORT) and downloads the blob there; MinIO checks the
// signature against the Host header, so the same URL sent to the storage
// host is refused: signing for the storage host would not do.
func TestPublicEndpoint(t *testing.T) { eachServer(t, testPublicEndpoint) }

func testPublicEndpoint(t *testing.T, m *miniotest.Server) {
	storage, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	public := "http://localhost:" + storage.Port()
	s := newStoreWith(t, m, "public/", func(o *s3.Options) { o.PublicEndpoint = public })
	data := []byte("bytes for the public host")
	key, d := commitBytes(t, s, data, len(data)) // the store itself uses Endpoint
	if got := readAll(t, s, key); !bytes.Equal(got, data) {
		t.Fatalf("read back %q", got)
	}
	signed, err := s.SignBlob(context.Background(), registry.BlobInfo{Digest: d, Size: int64(len(data)), Key: key}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "localhost:"+storage.Port() || !strings.HasPrefix(u.Path, "/"+m.Bucket+"/") {
		t.Fatalf("URL %s: want host localhost:%s and a path-style bucket", signed.URL, storage.Port())
	}
	resp, body := httpGet(t, signed.URL)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET public URL: %d %q", resp.StatusCode, body)
	}
	u.Host = storage.Host
	if resp, body := httpGet(t, u.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("URL signed for localhost sent to %s: %d %s, want 403", storage.Host, resp.StatusCode, body)
	}
}

// TestPresignedResponseHeaders: signing.s3.response_content_type and
// response_content_disposition reach the client: MinIO answers the
// pre-signed GET with those headers, {digest} replaced by the hex digest.
func TestPresignedResponseHeaders(t *testing.T) { eachServer(t, testPresignedResponseHeaders) }

func testPresignedResponseHeaders(t *testing.T, m *miniotest.Server) {
	s := newStoreWith(t, m, "headers/", func(o *s3.Options) {
		o.ResponseContentType = "application/vnd.wharf.blob"
		o.ResponseContentDisposition = `attachment; filename="{digest}.bin"`
	})
	data := []byte("header bytes")
	key, d := commitBytes(t, s, data, len(data))
	signed, err := s.SignBlob(context.Background(), registry.BlobInfo{Digest: d, Size: int64(len(data)), Key: key}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := httpGet(t, signed.URL)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/vnd.wharf.blob" {
		t.Errorf("Content-Type %q", got)
	}
	if got, want := resp.Header.Get("Content-Disposition"), `attachment; filename="`+d.Encoded()+`.bin"`; got != want {
		t.Errorf("Content-Disposition %q, want %q", got, want)
	}
	// Without the options the object's own type comes back.
	plain := newStore(t, m, "headers/")
	signed, err = plain.SignBlob(context.Background(), registry.BlobInfo{Digest: d, Size: int64(len(data)), Key: key}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = httpGet(t, signed.URL)
	if got := resp.Header.Get("Content-Type"); got != "application/octet-stream" || resp.Header.Get("Content-Disposition") != "" {
		t.Errorf("without options: Content-Type %q, Content-Disposition %q", got, resp.Header.Get("Content-Disposition"))
	}
}

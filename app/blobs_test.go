package app

import (
	"bytes"
	"context"
	"net/url"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/testhttp"
	"github.com/wharf-registry/wharf/registry"
)

// TestS3StorageSettingsWired: storage.s3.sse, sse_kms_key_id and
// public_endpoint and signing.s3.response_* reach the S3 store that serve
// builds: a blob stored through it is encrypted with the configured KMS
// key, and its pre-signed URL is signed for the public host and answers
// with the configured headers.
func TestS3StorageSettingsWired(t *testing.T) {
	m := miniotest.StartWith(t, miniotest.Options{KMS: true})
	storage, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Storage.Driver, cfg.Signing.Signer = "s3", "s3"
	cfg.Storage.S3 = config.S3{Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: "wired/",
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: 5 << 20,
		PublicEndpoint: "http://localhost:" + storage.Port(), SSE: "aws:kms", SSEKMSKeyID: m.KMSKeyName}
	cfg.Signing.S3.ResponseContentType = "application/x-wired"
	cfg.Signing.S3.ResponseContentDisposition = "attachment; filename={digest}"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blobs, _, err := OpenBlobStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := urlSigner(cfg, blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("wired bytes")
	d := digest.FromBytes(data)
	up := blobs.Uploads()
	u := &registry.Upload{ID: "wired1", HashAlg: digest.SHA256}
	if err := up.Begin(ctx, u); err != nil {
		t.Fatal(err)
	}
	n, err := up.Append(ctx, u, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	u.Offset += n
	key, err := up.Commit(ctx, u, d)
	if err != nil {
		t.Fatal(err)
	}
	h, err := m.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &m.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerSideEncryption != types.ServerSideEncryptionAwsKms {
		t.Errorf("stored with encryption %q, want aws:kms", h.ServerSideEncryption)
	}
	signed, err := signer.SignBlob(ctx, registry.BlobInfo{Digest: d, Size: int64(len(data)), Key: key}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	su, err := url.Parse(signed.URL)
	if err != nil {
		t.Fatal(err)
	}
	if su.Host != "localhost:"+storage.Port() {
		t.Errorf("URL host %s, want the public endpoint's", su.Host)
	}
	resp, body := testhttp.Get(t, nil, signed.URL)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET %s: %d %q", signed.URL, resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/x-wired" {
		t.Errorf("Content-Type %q", got)
	}
	if got := resp.Header.Get("Content-Disposition"); got != "attachment; filename="+d.Encoded() {
		t.Errorf("Content-Disposition %q", got)
	}
}

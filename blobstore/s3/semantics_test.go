package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/testhttp"
)

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// TestServerSemantics pins, on every server kind, the S3 behaviour the
// store relies on beyond plain PUT and GET, so a server that differs
// shows up here by name rather than as a corrupt read elsewhere.
func TestServerSemantics(t *testing.T) { eachServer(t, testServerSemantics) }

func testServerSemantics(t *testing.T, m *miniotest.Server) {
	ctx := context.Background()
	c := m.Client()
	put := func(key, body string) string {
		t.Helper()
		out, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &m.Bucket, Key: aws.String(key), Body: strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ETag)
	}
	etag1 := put("sem/obj", "first version")
	put("sem/obj", "second version, longer")

	// A reader pins the ETag it saw at Open: a GET after the object
	// changed must fail (412), never return other bytes.
	_, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/obj"), IfMatch: &etag1, Range: aws.String("bytes=3-")})
	if httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("GET If-Match a stale ETag: %v (status %d), want 412", err, httpStatus(err))
	}
	// A range GET from an offset returns just that range.
	out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/obj"), Range: aws.String("bytes=7-")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "version, longer" {
		t.Errorf("GET bytes=7-: %q", b)
	}
	// A missing object is a 404 for HEAD and GET (registry.ErrNotFound).
	if _, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/missing")}); httpStatus(err) != http.StatusNotFound {
		t.Errorf("HEAD missing: %v, want 404", err)
	}
	if _, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/missing")}); httpStatus(err) != http.StatusNotFound {
		t.Errorf("GET missing: %v, want 404", err)
	}
	// Deleting a missing object succeeds (Delete and Abort are idempotent).
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/missing")}); err != nil {
		t.Errorf("DELETE missing: %v", err)
	}
	// A batch delete removes every key named.
	put("sem/d1", "x")
	put("sem/d2", "y")
	if _, err := c.DeleteObjects(ctx, &awss3.DeleteObjectsInput{Bucket: &m.Bucket, Delete: &types.Delete{
		Objects: []types.ObjectIdentifier{{Key: aws.String("sem/d1")}, {Key: aws.String("sem/d2")}}, Quiet: aws.Bool(true)}}); err != nil {
		t.Errorf("DeleteObjects: %v", err)
	}
	if keys := m.Keys(t, "sem/d"); len(keys) != 0 {
		t.Errorf("left after DeleteObjects: %v", keys)
	}

	// Multipart: a part below 5 MiB only last; ListParts, listing by key
	// prefix, abort.
	key := "sem/mpu"
	mpu, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &m.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	p1 := bytes.Repeat([]byte("a"), 5<<20)
	up, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(p1)})
	if err != nil {
		t.Fatal(err)
	}
	up2, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu.UploadId, PartNumber: aws.Int32(2), Body: strings.NewReader("tail")})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := c.ListParts(ctx, &awss3.ListPartsInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu.UploadId, MaxParts: aws.Int32(1)})
	if err != nil || len(lp.Parts) != 1 {
		t.Errorf("ListParts MaxParts=1: %v, %v", lp, err)
	}
	// By the exact key: MinIO lists none under a shorter prefix
	// ("sem/"), SeaweedFS (like AWS) all of them; the store asks for its
	// key only.
	lm, err := c.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: &m.Bucket, Prefix: &key})
	if err != nil || len(lm.Uploads) != 1 || aws.ToString(lm.Uploads[0].UploadId) != aws.ToString(mpu.UploadId) {
		t.Errorf("ListMultipartUploads prefix=key: %+v, %v", lm, err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: up.ETag}, {PartNumber: aws.Int32(2), ETag: up2.ETag}}}}); err != nil {
		t.Fatal(err)
	}
	h, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &m.Bucket, Key: &key})
	if err != nil || aws.ToInt64(h.ContentLength) != 5<<20+4 {
		t.Errorf("HEAD after complete: %v %v", h, err)
	}
	// Conditional writes: If-None-Match "*" refuses (412) to replace an
	// object, on PutObject and on CompleteMultipartUpload, and the object
	// keeps its bytes: what a commit that must never overwrite a stored
	// blob can build on, on both servers.
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &m.Bucket, Key: &key, Body: strings.NewReader("other"), IfNoneMatch: aws.String("*")}); httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("PUT If-None-Match * over an object: %v, want 412", err)
	}
	mpu3, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &m.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	up3, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu3.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("other")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu3.UploadId, IfNoneMatch: aws.String("*"),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: up3.ETag}}}}); httpStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("complete If-None-Match * over an object: %v, want 412", err)
	}
	_, _ = c.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: &m.Bucket, Key: &key, UploadId: mpu3.UploadId})
	if h, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &m.Bucket, Key: &key}); err != nil || aws.ToInt64(h.ContentLength) != 5<<20+4 {
		t.Errorf("object after refused writes: %v %v", h, err)
	}
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/new"), Body: strings.NewReader("n"), IfNoneMatch: aws.String("*")}); err != nil {
		t.Errorf("PUT If-None-Match * of a new key: %v", err)
	}

	// A pre-signed GET serves ranges (clients resume through the
	// redirect), refuses HEAD (signed for GET only) and a tampered
	// signature, and answers 404 once the object is gone.
	signed, err := awss3.NewPresignClient(c).PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/new")})
	if err != nil {
		t.Fatal(err)
	}
	status := func(method, url, rng string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, b := testhttp.Do(t, nil, req)
		return resp.StatusCode, string(b)
	}
	if code, body := status(http.MethodGet, signed.URL, "bytes=0-0"); code != http.StatusPartialContent || body != "n" {
		t.Errorf("pre-signed range GET: %d %q", code, body)
	}
	if code, _ := status(http.MethodHead, signed.URL, ""); code != http.StatusForbidden {
		t.Errorf("pre-signed URL used for HEAD: %d, want 403", code)
	}
	if code, _ := status(http.MethodGet, strings.Replace(signed.URL, "X-Amz-Signature=", "X-Amz-Signature=0", 1), ""); code != http.StatusForbidden {
		t.Errorf("tampered signature: %d, want 403", code)
	}
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &m.Bucket, Key: aws.String("sem/new")}); err != nil {
		t.Fatal(err)
	}
	if code, _ := status(http.MethodGet, signed.URL, ""); code != http.StatusNotFound {
		t.Errorf("pre-signed GET of a deleted object: %d, want 404", code)
	}

	mpu2, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &m.Bucket, Key: aws.String("sem/aborted")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: &m.Bucket, Key: aws.String("sem/aborted"), UploadId: mpu2.UploadId}); err != nil {
		t.Errorf("abort: %v", err)
	}
	if lm, err := c.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: &m.Bucket, Prefix: aws.String("sem/aborted")}); err != nil || len(lm.Uploads) != 0 {
		t.Errorf("after abort: %+v, %v", lm, err)
	}
}

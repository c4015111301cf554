// Package s3 is the scale-out blob store: blobs in an S3-compatible bucket
// (AWS S3, MinIO, Ceph RGW, Cloudflare R2), written through S3 multipart
// uploads, read with ranged GETs, and handed out as pre-signed GET URLs.
//
// Every upload session is a multipart upload of the blob's final object,
// <prefix>blobs/<upload-id>: finishing it completes the multipart upload
// where the blob will live, so nothing is copied server-side and the time
// from the final PUT to 201 does not grow with the blob size. The metadata
// store records that key for the digest.
//
// S3 wants every part but the last to be at least 5 MiB, while OCI clients
// may PATCH chunks of any size (one byte, say). Bytes that do not fill a
// part yet are kept in S3 as small immutable "tail segment" objects under
// <prefix>uploads/<upload-id>/, listed in the session state; the Append that
// fills a part reads them back, prepends them and uploads the part. No
// replica keeps anything in memory between requests: the state (multipart
// upload id, parts and ETags, tail segments, offset) is JSON in
// registry.Upload.Backend, which the metadata store persists after every
// successful Append, so any replica can take the next PATCH and a restart
// loses nothing. An Append holds at most four part-sized buffers (one
// filling from the request while up to three parts upload), whatever the
// blob size; between requests the store keeps four for reuse.
//
// The store keeps one empty object, KeepName, in each of uploads/ and
// blobs/. S3 has no directories, but MinIO and SeaweedFS keep objects in
// a file tree and remove a directory with its last object: a PUT whose
// parent directory another request's DELETE removes at that moment fails
// (AccessDenied on MinIO, minio/minio#15157). With the markers the shared
// directories never empty, so pushes, commits and GC deletes never race a
// removal; only a session's own uploads/<id>/ comes and goes, and one
// session's requests do not overlap.
package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/wharf-registry/wharf/registry"
)

// Part sizes: S3's minimum for every part but the last, and the largest
// this store buffers (memory per in-flight upload request).
const (
	MinPartSize     = 5 << 20
	MaxPartSize     = 16 << 20
	DefaultPartSize = 8 << 20
	// MaxPresignExpiry is S3's limit for a SigV4 pre-signed URL.
	MaxPresignExpiry = 7 * 24 * time.Hour
	// maxTailSegments bounds the session state: when an Append would add
	// one more tail segment it rewrites the tail as one object instead.
	maxTailSegments = 16
)

// Server-side encryption modes (Options.SSE).
const (
	SSEAES256 = string(types.ServerSideEncryptionAes256) // SSE-S3
	SSEKMS    = string(types.ServerSideEncryptionAwsKms) // SSE-KMS
)

// OptionError names the option a Check refused (a field of Options).
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

// Check reports the first option New would refuse (an *OptionError),
// without contacting anything: the configuration validates its settings
// with the store's own rules, in the store's words.
func (o Options) Check() error {
	bad := func(option string, err error) error { return &OptionError{option, err} }
	if o.Bucket == "" {
		return bad("Bucket", errors.New("bucket is required"))
	}
	if p := o.PartSize; p != 0 && (p < MinPartSize || p > MaxPartSize) {
		return bad("PartSize", fmt.Errorf("part size %d: want %d to %d bytes", p, MinPartSize, MaxPartSize))
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return bad("AccessKey", errors.New("set both access key and secret key, or neither (default credential chain)"))
	}
	for _, ep := range [...]struct{ option, what, e string }{{"Endpoint", "endpoint", o.Endpoint}, {"PublicEndpoint", "public endpoint", o.PublicEndpoint}} {
		if u, err := url.Parse(ep.e); ep.e != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			return bad(ep.option, fmt.Errorf("%s %q: want an http:// or https:// URL", ep.what, ep.e))
		}
	}
	switch o.SSE {
	case "", SSEAES256, SSEKMS:
	default:
		return bad("SSE", fmt.Errorf("server-side encryption %q: want empty (off), %s (SSE-S3) or %s (SSE-KMS)", o.SSE, SSEAES256, SSEKMS))
	}
	if o.SSEKMSKeyID != "" && o.SSE != SSEKMS {
		return bad("SSEKMSKeyID", fmt.Errorf("a KMS key id needs server-side encryption %s", SSEKMS))
	}
	return nil
}

// Options configure a Store.
type Options struct {
	// Endpoint is the S3 API URL (http://127.0.0.1:9000 for MinIO,
	// https://<account>.r2.cloudflarestorage.com for R2); empty is AWS.
	Endpoint string
	// PublicEndpoint, when set, is the S3 URL clients download from
	// (https://s3.example.com in front of http://minio.internal:9000):
	// SigV4 signs the Host header, so a pre-signed URL must be signed for
	// the host the client actually calls (CNCF Distribution #4750). Only
	// SignBlob uses it; the store itself talks to Endpoint.
	PublicEndpoint string
	// Region is the bucket's region ("auto" for R2); default us-east-1.
	Region string
	Bucket string
	// Prefix is prepended to every key ("wharf/"); a missing trailing
	// slash is added.
	Prefix string
	// AccessKey and SecretKey (and SessionToken) are static credentials;
	// when empty the AWS default chain is used (environment, shared
	// config, web identity, ECS/EC2 roles), with rotation.
	AccessKey, SecretKey, SessionToken string
	// Credentials, when set, overrides both and is used as is (wrap it in
	// aws.NewCredentialsCache to cache it): tests, custom rotation.
	Credentials aws.CredentialsProvider
	// PathStyle addresses the bucket as <endpoint>/<bucket> (MinIO, most
	// self-hosted servers) instead of <bucket>.<endpoint>.
	PathStyle bool
	// PartSize is the multipart part size, 5 to 16 MiB (default 8 MiB).
	PartSize int64
	// SSE is the server-side encryption of every object the store
	// creates: "" (none requested; the bucket's default applies),
	// SSEAES256 (SSE-S3) or SSEKMS (SSE-KMS, with SSEKMSKeyID or the
	// account's default key). Reads and pre-signed GETs need nothing
	// extra: S3 decrypts for whoever may read the object.
	SSE string
	// SSEKMSKeyID is the KMS key (id, ARN or alias) for SSE-KMS; only
	// with SSE = SSEKMS.
	SSEKMSKeyID string
	// ResponseContentType and ResponseContentDisposition, when set, are
	// added to pre-signed URLs (response-content-type, ...), so the
	// storage answers with those headers.
	ResponseContentType        string
	ResponseContentDisposition string
	// HTTPClient replaces the SDK's HTTP client.
	HTTPClient *http.Client
}

// Store is a registry.BlobStore, registry.UploadStore and registry.Signer
// over one S3 bucket.
type Store struct {
	client   *s3.Client
	presign  *s3.PresignClient
	creds    aws.CredentialsProvider
	bucket   string
	prefix   string
	partSize int64
	opts     Options
	// bufs keeps up to idleBufs part buffers between requests. Not a
	// sync.Pool: that drops its buffers at every GC, and each part-sized
	// buffer reallocated is garbage that raises the heap goal, so a long
	// upload's peak RSS crept up with the blob size.
	bufs chan *[]byte
	now  func() time.Time
	// kept: the KeepName markers exist (checked once per process);
	// keepRetry: when a failed attempt may be made again (Unix ns).
	kept      atomic.Bool
	keepRetry atomic.Int64
}

var (
	_ registry.BlobStore                       = (*Store)(nil)
	_ registry.UploadStore                     = (*Store)(nil)
	_ registry.Signer                          = (*Store)(nil)
	_ registry.RotatingSigner                  = (*Store)(nil)
	_ interface{ Ping(context.Context) error } = (*Store)(nil)
)

// New returns a store. It does not contact the server: call Ping for that.
func New(ctx context.Context, o Options) (*Store, error) {
	if err := o.Check(); err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(o.Region)}
	switch {
	case o.Credentials != nil:
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(o.Credentials))
	case o.AccessKey != "":
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		so.APIOptions = append(so.APIOptions, markUnavailable)
		if o.HTTPClient != nil {
			// Set here, not through the loaded config: there the SDK would
			// try to add AWS_CA_BUNDLE to it and refuse a plain *http.Client.
			so.HTTPClient = o.HTTPClient
		}
		// Checksums only where S3 requires them: the registry verifies
		// the digest of every blob itself, and several S3-compatible
		// servers reject the SDK's default trailing checksums.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if o.Credentials != nil {
		cfg.Credentials = o.Credentials
		client = s3.New(client.Options(), func(so *s3.Options) { so.Credentials = o.Credentials })
	}
	presignClient := client
	if o.PublicEndpoint != "" {
		// Same options (credentials, region, path style), other host.
		presignClient = s3.New(client.Options(), func(so *s3.Options) { so.BaseEndpoint = aws.String(o.PublicEndpoint) })
	}
	s := &Store{
		client: client, presign: s3.NewPresignClient(presignClient), creds: cfg.Credentials,
		bucket: o.Bucket, prefix: o.Prefix, partSize: o.PartSize, opts: o, now: time.Now,
	}
	s.bufs = make(chan *[]byte, idleBufs)
	return s, nil
}

// KeepName is the empty object the store keeps in its uploads/ and
// blobs/ directories (see the package comment); listings of the bucket
// show it, it holds no blob.
const KeepName = ".wharf-keep"

// keepDirs writes the KeepName markers where they are missing, once per
// process: before the first write into uploads/ or blobs/. Best effort: a
// store that cannot write them works as before, race and all, and tries
// again at most once a minute (not on every upload request).
func (s *Store) keepDirs(ctx context.Context) {
	if s.kept.Load() {
		return
	}
	now := time.Now().UnixNano()
	if next := s.keepRetry.Load(); now < next || !s.keepRetry.CompareAndSwap(next, now+int64(time.Minute)) {
		return // a failed attempt less than a minute ago, or another request is trying
	}
	ok := true
	for _, dir := range []string{"uploads/", "blobs/"} {
		key := s.prefix + dir + KeepName
		if _, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key}); err == nil {
			continue
		}
		in := &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: strings.NewReader(""), ContentLength: aws.Int64(0)}
		in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
		if _, err := s.client.PutObject(ctx, in); err != nil {
			ok = false
		}
	}
	s.kept.Store(ok)
}

// Client returns the underlying S3 client (tests and tools).
func (s *Store) Client() *s3.Client { return s.client }

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// Ping checks that the bucket is reachable with the configured
// credentials (HeadBucket): the readiness probe.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err != nil {
		return fmt.Errorf("s3 store: bucket %s: %w", s.bucket, err)
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// isNotFound reports a missing object, bucket or multipart upload.
func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchBucket":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

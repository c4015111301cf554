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
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/opencontainers/go-digest"

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

// CheckSSE validates an SSE mode and KMS key id (shared with the config
// validation, so both reject the same settings with the same words).
func CheckSSE(sse, kmsKeyID string) error {
	switch sse {
	case "", SSEAES256, SSEKMS:
	default:
		return fmt.Errorf("server-side encryption %q: want empty (off), %s (SSE-S3) or %s (SSE-KMS)", sse, SSEAES256, SSEKMS)
	}
	if kmsKeyID != "" && sse != SSEKMS {
		return fmt.Errorf("a KMS key id needs server-side encryption %s", SSEKMS)
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
	if o.Bucket == "" {
		return nil, errors.New("s3 store: bucket is required")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize || o.PartSize > MaxPartSize {
		return nil, fmt.Errorf("s3 store: part size %d: want %d to %d bytes", o.PartSize, MinPartSize, MaxPartSize)
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return nil, errors.New("s3 store: set both access key and secret key, or neither (default credential chain)")
	}
	if err := CheckSSE(o.SSE, o.SSEKMSKeyID); err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	if e := o.PublicEndpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3 store: public endpoint %q: want an http:// or https:// URL", e)
		}
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

// ---- reading ----

func (s *Store) checkKey(key string) error {
	if key == "" || !strings.HasPrefix(key, s.prefix) || strings.Contains(key, "..") {
		return fmt.Errorf("s3 store: invalid key %q", key)
	}
	return nil
}

// Open implements registry.BlobStore. The reader learns the size with one
// HEAD and issues a ranged GET from the current offset on the first Read
// after each Seek, so a Range request costs one GET of just that range.
func (s *Store) Open(ctx context.Context, key string) (registry.ReadSeekCloser, error) {
	if err := s.checkKey(key); err != nil {
		if key != "" && !strings.Contains(key, "..") {
			return nil, registry.ErrNotFound // not under our prefix: not ours
		}
		return nil, err
	}
	h, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		if isNotFound(err) {
			return nil, registry.ErrNotFound
		}
		return nil, fmt.Errorf("s3 store: head %s: %w", key, err)
	}
	return &objectReader{s: s, ctx: ctx, key: key, size: aws.ToInt64(h.ContentLength), etag: aws.ToString(h.ETag)}, nil
}

type objectReader struct {
	s    *Store
	ctx  context.Context
	key  string
	etag string
	size int64
	pos  int64
	body io.ReadCloser
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		in := &s3.GetObjectInput{Bucket: &r.s.bucket, Key: &r.key, Range: aws.String("bytes=" + strconv.FormatInt(r.pos, 10) + "-")}
		if r.etag != "" {
			in.IfMatch = &r.etag // the object must not change under a reader
		}
		out, err := r.s.client.GetObject(r.ctx, in)
		if err != nil {
			if isNotFound(err) {
				return 0, registry.ErrNotFound
			}
			return 0, fmt.Errorf("s3 store: get %s: %w", r.key, err)
		}
		r.body = out.Body
	}
	n, err := r.body.Read(p)
	r.pos += int64(n)
	if err == io.EOF && r.pos < r.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *objectReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return r.pos, errors.New("s3 store: invalid whence")
	}
	if abs < 0 {
		return r.pos, errors.New("s3 store: negative position")
	}
	if abs != r.pos && r.body != nil {
		r.body.Close()
		r.body = nil
	}
	r.pos = abs
	return abs, nil
}

func (r *objectReader) Close() error {
	if r.body != nil {
		err := r.body.Close()
		r.body = nil
		return err
	}
	return nil
}

// Delete implements registry.BlobStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3 store: delete %s: %w", key, err)
	}
	return nil
}

// Uploads implements registry.BlobStore.
func (s *Store) Uploads() registry.UploadStore { return s }

// ---- signing ----

// SigningGeneration implements registry.RotatingSigner: it identifies the
// credentials SignBlob signs with right now, so the registry's signature
// cache never serves a URL signed with credentials that have rotated.
func (s *Store) SigningGeneration(ctx context.Context) (string, error) {
	c, err := s.creds.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	return credGeneration(c), nil
}

func credGeneration(c aws.Credentials) string {
	h := sha256.New()
	h.Write([]byte(c.AccessKeyID))
	h.Write([]byte{0})
	h.Write([]byte(c.SessionToken))
	if c.CanExpire {
		h.Write([]byte(strconv.FormatInt(c.Expires.UnixNano(), 10)))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// SignBlob implements registry.Signer with a SigV4 pre-signed GET of the
// blob's object, for Options.PublicEndpoint when set (the signature
// covers the host). The URL expires at the requested time, or earlier when
// S3's 7-day limit or the signing credentials' own expiry come first: a
// URL signed with temporary credentials stops working when they do.
func (s *Store) SignBlob(ctx context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	if err := s.checkKey(b.Key); err != nil {
		return registry.SignedURL{}, err
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("s3 store: credentials: %w", err)
	}
	now := s.now()
	if creds.CanExpire && creds.Expires.Before(expires) {
		expires = creds.Expires
	}
	// X-Amz-Date has one-second resolution and may be taken a moment
	// after now: leave a second of margin, then read the true expiry back
	// from the URL.
	life := expires.Sub(now).Truncate(time.Second) - time.Second
	life = min(life, MaxPresignExpiry)
	if life < time.Second {
		return registry.SignedURL{}, fmt.Errorf("s3 store: signing credentials expire at %s", creds.Expires.Format(time.RFC3339))
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &b.Key}
	if s.opts.ResponseContentType != "" {
		in.ResponseContentType = &s.opts.ResponseContentType
	}
	if s.opts.ResponseContentDisposition != "" {
		in.ResponseContentDisposition = aws.String(strings.ReplaceAll(s.opts.ResponseContentDisposition, "{digest}", b.Digest.Encoded()))
	}
	pinned := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	req, err := s.presign.PresignGetObject(ctx, in, func(po *s3.PresignOptions) {
		po.Expires = life
		po.ClientOptions = append(po.ClientOptions, func(o *s3.Options) { o.Credentials = pinned })
	})
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("s3 store: presign: %w", err)
	}
	u, err := url.Parse(req.URL)
	if err != nil {
		return registry.SignedURL{}, err
	}
	signedAt, err := time.Parse("20060102T150405Z", u.Query().Get("X-Amz-Date"))
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("s3 store: presigned URL without X-Amz-Date: %w", err)
	}
	return registry.SignedURL{URL: req.URL, Expires: signedAt.Add(life)}, nil
}

// ---- uploads ----

// state is the session state kept in registry.Upload.Backend.
type state struct {
	V   int    `json:"v"`
	Key string `json:"key"` // the blob's final object
	MPU string `json:"mpu"` // multipart upload id
	// Off is the number of bytes this state holds: parts, then tail.
	Off   int64     `json:"off"`
	Parts []part    `json:"parts,omitempty"`
	Tail  []segment `json:"tail,omitempty"`
	// Prev is the state before the last Append, so an Append whose
	// offset was never recorded can be rolled back by the next one.
	Prev *snapshot `json:"prev,omitempty"`
	// Done: Reader completed the multipart upload (the object exists).
	Done bool `json:"done,omitempty"`
}

type part struct {
	N    int32  `json:"n"`
	ETag string `json:"etag"`
	Size int64  `json:"size"`
}

// segment is a tail object; only its first Len bytes count.
type segment struct {
	Key string `json:"key"`
	Len int64  `json:"len"`
}

type snapshot struct {
	Off    int64     `json:"off"`
	NParts int       `json:"nparts"`
	Tail   []segment `json:"tail,omitempty"`
}

func (st *state) partsBytes(n int) int64 {
	var t int64
	for _, p := range st.Parts[:n] {
		t += p.Size
	}
	return t
}

func tailBytes(t []segment) int64 {
	var n int64
	for _, s := range t {
		n += s.Len
	}
	return n
}

// truncateTail keeps the first n bytes of a tail.
func truncateTail(t []segment, n int64) []segment {
	var out []segment
	for _, s := range t {
		if n <= 0 {
			break
		}
		s.Len = min(s.Len, n)
		n -= s.Len
		out = append(out, s)
	}
	return out
}

var errLost = errors.New("s3 store: session state does not hold the recorded offset")

// at returns the state holding exactly off bytes: the state itself, or it
// or its predecessor cut back (dropping bytes written past a recorded
// offset, which the next Append must discard), and the tail segments that
// the result no longer references.
func (st *state) at(off int64) (*state, []string, error) {
	all := map[string]bool{}
	for _, s := range st.Tail {
		all[s.Key] = true
	}
	if st.Prev != nil {
		for _, s := range st.Prev.Tail {
			all[s.Key] = true
		}
	}
	e := &state{V: st.V, Key: st.Key, MPU: st.MPU, Done: st.Done}
	switch pb := st.partsBytes(len(st.Parts)); {
	case off == st.Off:
		e.Off, e.Parts, e.Tail = st.Off, st.Parts, st.Tail
	case off >= pb && off < st.Off:
		e.Off, e.Parts, e.Tail = off, st.Parts, truncateTail(st.Tail, off-pb)
	case st.Prev != nil && st.Prev.NParts <= len(st.Parts) && off >= st.partsBytes(st.Prev.NParts) && off <= st.Prev.Off:
		n := st.Prev.NParts
		e.Off, e.Parts, e.Tail = off, st.Parts[:n], truncateTail(st.Prev.Tail, off-st.partsBytes(n))
	default:
		return nil, nil, fmt.Errorf("%w (state %d, recorded %d): %w", errLost, st.Off, off, registry.ErrNotFound)
	}
	if e.Done && off != st.Off {
		return nil, nil, fmt.Errorf("%w: %w", errLost, registry.ErrNotFound)
	}
	e.Parts = append([]part(nil), e.Parts...)
	e.Tail = append([]segment(nil), e.Tail...)
	for _, s := range e.Tail {
		delete(all, s.Key)
	}
	garbage := make([]string, 0, len(all))
	for k := range all {
		garbage = append(garbage, k)
	}
	return e, garbage, nil
}

func decodeState(u *registry.Upload) (*state, error) {
	var st state
	if err := json.Unmarshal(u.Backend, &st); err != nil || st.V != 1 || st.Key == "" || st.MPU == "" {
		return nil, fmt.Errorf("s3 store: upload %s has no valid S3 state: %w", u.ID, registry.ErrNotFound)
	}
	return &st, nil
}

func (s *Store) uploadPrefix(u *registry.Upload) (string, error) {
	if u.ID == "" || strings.ContainsAny(u.ID, `/\.`) {
		return "", fmt.Errorf("s3 store: invalid upload id %q", u.ID)
	}
	return s.prefix + "uploads/" + u.ID + "/", nil
}

// BlobKey is where the upload with this id puts its blob.
func (s *Store) BlobKey(uploadID string) string { return s.prefix + "blobs/" + uploadID }

// Lock implements registry.UploadStore as a no-op: S3 fences writers by
// itself. Every tail segment has a key of its own, completing the upload
// checks each part against the ETag its recorded state names (a part
// another request overwrote fails the completion), and a session's object
// key is unique to it, so no commit can replace another's blob.
func (s *Store) Lock(context.Context, *registry.Upload) (func(), error) { return func() {}, nil }

// Begin implements registry.UploadStore: it creates the multipart upload
// of the blob's final object, so the id is persisted with the session and
// an abandoned session can always be aborted.
func (s *Store) Begin(ctx context.Context, u *registry.Upload) error {
	if _, err := s.uploadPrefix(u); err != nil {
		return err
	}
	key := s.BlobKey(u.ID)
	in := &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, ContentType: aws.String("application/octet-stream"),
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return fmt.Errorf("s3 store: create multipart upload: %w", err)
	}
	b, err := json.Marshal(&state{V: 1, Key: key, MPU: aws.ToString(out.UploadId)})
	if err != nil {
		return err
	}
	u.Backend = b
	return nil
}

// sse returns the encryption headers of every object-creating request
// (CreateMultipartUpload, PutObject); UploadPart and
// CompleteMultipartUpload inherit the multipart upload's.
func (s *Store) sse() (types.ServerSideEncryption, *string) {
	if s.opts.SSE == "" {
		return "", nil
	}
	var key *string
	if s.opts.SSEKMSKeyID != "" {
		key = aws.String(s.opts.SSEKMSKeyID)
	}
	return types.ServerSideEncryption(s.opts.SSE), key
}

// maxInflight is how many parts of one request upload at once.
const maxInflight = 3

// idleBufs is how many part buffers stay allocated between requests: the
// ones a lone upload streams through, so it allocates none after its
// first parts.
const idleBufs = maxInflight + 1

func (s *Store) getBuf() *[]byte {
	select {
	case b := <-s.bufs:
		return b
	default:
		b := make([]byte, s.partSize)
		return &b
	}
}

func (s *Store) putBuf(b *[]byte) {
	select {
	case s.bufs <- b:
	default: // enough kept; this one goes to the GC
	}
}

// Append implements registry.UploadStore. It reads the chunk into a
// part-sized buffer after the bytes of the tail: each time the buffer
// fills, the tail segments are read into its front and it is uploaded as
// the next part; what is left at the end becomes a new tail segment.
func (s *Store) Append(ctx context.Context, u *registry.Upload, r io.Reader) (int64, error) {
	prefix, err := s.uploadPrefix(u)
	if err != nil {
		return 0, err
	}
	st, err := decodeState(u)
	if err != nil {
		return 0, err
	}
	if st.Done {
		return 0, fmt.Errorf("s3 store: upload %s is already complete", u.ID)
	}
	// io.ReadFull reports a short final read as io.ErrUnexpectedEOF, the
	// error a body cut off mid-chunk returns too: keep the body's own
	// error apart, so a cut body fails instead of ending the chunk.
	body := &readErr{r: r}
	r = body
	e, garbage, err := st.at(u.Offset)
	if err != nil {
		return 0, err
	}

	next := &state{V: 1, Key: e.Key, MPU: e.MPU, Parts: e.Parts, Tail: e.Tail,
		Prev: &snapshot{Off: e.Off, NParts: len(e.Parts), Tail: e.Tail}}
	// Up to maxInflight parts upload while the next one fills from the
	// request: reading the client and writing to S3 overlap, and S3 sees
	// several parts at once, as from the SDK's upload manager. Memory per
	// request is bounded by maxInflight+1 part buffers, whatever the blob
	// size.
	bp := s.getBuf()
	var inflight []*pendingPart // in part-number order
	var free []*[]byte          // buffers of finished parts
	// waitOldest records the oldest part in flight; after a failure the
	// parts behind it are drained but not recorded.
	waitOldest := func() error {
		p := inflight[0]
		inflight = inflight[1:]
		res := <-p.done
		free = append(free, p.buf)
		if res.err != nil {
			return res.err
		}
		next.Parts = append(next.Parts, res.part)
		return nil
	}
	waitAll := func() error {
		for len(inflight) > 0 {
			if err := waitOldest(); err != nil {
				return err
			}
		}
		return nil
	}
	defer func() {
		for _, p := range inflight {
			<-p.done
			s.putBuf(p.buf)
		}
		s.putBuf(bp)
		for _, b := range free {
			s.putBuf(b)
		}
	}()
	tail := tailBytes(next.Tail)
	var total int64
	for {
		buf := *bp
		n, rerr := io.ReadFull(r, buf[tail:])
		total += int64(n)
		switch rerr {
		case nil: // a full part
			if err := s.readTail(ctx, next.Tail, buf[:tail]); err != nil {
				return total, err
			}
			if len(inflight) == maxInflight {
				if err := waitOldest(); err != nil {
					return total, err
				}
			}
			inflight = append(inflight, s.uploadPartAsync(ctx, next, int32(len(next.Parts)+len(inflight)+1), bp))
			if k := len(free); k > 0 {
				bp, free = free[k-1], free[:k-1]
			} else {
				bp = s.getBuf()
			}
			next.Tail, tail = nil, 0
			continue
		case io.EOF, io.ErrUnexpectedEOF:
			if body.err != nil {
				return total, body.err
			}
		default:
			return total, rerr
		}
		if err := waitAll(); err != nil {
			return total, err
		}
		if total == 0 {
			return 0, nil
		}
		if n > 0 {
			if len(next.Parts) == len(e.Parts) { // no part proved the upload alive
				if err := s.checkLive(ctx, next); err != nil {
					return total, err
				}
			}
			off := next.partsBytes(len(next.Parts))
			data := buf[tail : tail+int64(n)]
			if len(next.Tail) >= maxTailSegments {
				// Rewrite the tail as one segment to keep the state small.
				if err := s.readTail(ctx, next.Tail, buf[:tail]); err != nil {
					return total, err
				}
				next.Tail, data = nil, buf[:tail+int64(n)]
			} else {
				off += tail
			}
			seg := segment{Key: prefix + "tail-" + strconv.FormatInt(off, 10) + "-" + randHex(6), Len: int64(len(data))}
			in := &s3.PutObjectInput{
				Bucket: &s.bucket, Key: &seg.Key, Body: bytes.NewReader(data), ContentLength: aws.Int64(seg.Len),
			}
			// Tail segments hold blob bytes too: encrypt them like the blob.
			in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
			if _, err := s.client.PutObject(ctx, in); err != nil {
				return total, fmt.Errorf("s3 store: put tail segment: %w", err)
			}
			next.Tail = append(next.Tail, seg)
		}
		break
	}
	next.Off = e.Off + total
	b, err := json.Marshal(next)
	if err != nil {
		return total, err
	}
	// Segments the recorded state no longer references (consumed into a
	// part by the previous Append, or written by an Append never
	// recorded) go only now, after this request's own writes, never
	// beside them: a single-drive MinIO removes a prefix's directory with
	// its last object, and a PUT into that prefix racing the removal fails
	// (AccessDenied; minio/minio#15157). A failed Append leaves them to the
	// next one; Commit and Abort sweep whatever remains.
	s.deleteKeys(context.WithoutCancel(ctx), garbage)
	u.Backend = b
	return total, nil
}

// checkLive fails when the multipart upload is gone (the session was
// aborted): an Append that writes only a tail segment would not notice.
func (s *Store) checkLive(ctx context.Context, st *state) error {
	_, err := s.client.ListParts(ctx, &s3.ListPartsInput{Bucket: &s.bucket, Key: &st.Key, UploadId: &st.MPU, MaxParts: aws.Int32(1)})
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("s3 store: multipart upload gone: %w", registry.ErrNotFound)
		}
		return fmt.Errorf("s3 store: list parts: %w", err)
	}
	return nil
}

type pendingPart struct {
	buf  *[]byte
	done chan partResult
}

type partResult struct {
	part part
	err  error
}

// uploadPartAsync uploads *buf as part n in the background.
func (s *Store) uploadPartAsync(ctx context.Context, st *state, n int32, buf *[]byte) *pendingPart {
	p := &pendingPart{buf: buf, done: make(chan partResult, 1)}
	key, mpu := st.Key, st.MPU
	go func() {
		pt, err := s.uploadPartN(ctx, key, mpu, n, *buf)
		p.done <- partResult{pt, err}
	}()
	return p
}

func (s *Store) uploadPart(ctx context.Context, st *state, data []byte) (part, error) {
	return s.uploadPartN(ctx, st.Key, st.MPU, int32(len(st.Parts)+1), data)
}

func (s *Store) uploadPartN(ctx context.Context, key, mpu string, n int32, data []byte) (part, error) {
	if n > 10000 {
		return part{}, errors.New("s3 store: blob exceeds 10000 parts; raise storage.s3.part_size")
	}
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &s.bucket, Key: &key, UploadId: &mpu, PartNumber: aws.Int32(n),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		if isNotFound(err) {
			return part{}, fmt.Errorf("s3 store: upload part %d: %w: %w", n, err, registry.ErrNotFound)
		}
		return part{}, fmt.Errorf("s3 store: upload part %d: %w", n, err)
	}
	return part{N: n, ETag: aws.ToString(out.ETag), Size: int64(len(data))}, nil
}

// readTail reads the tail segments into dst (exactly their length).
func (s *Store) readTail(ctx context.Context, tail []segment, dst []byte) error {
	for _, seg := range tail {
		if seg.Len == 0 {
			continue
		}
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket: &s.bucket, Key: aws.String(seg.Key), Range: aws.String("bytes=0-" + strconv.FormatInt(seg.Len-1, 10)),
		})
		if err != nil {
			if isNotFound(err) {
				return fmt.Errorf("s3 store: tail segment %s: %w", seg.Key, registry.ErrNotFound)
			}
			return fmt.Errorf("s3 store: read tail segment: %w", err)
		}
		_, err = io.ReadFull(out.Body, dst[:seg.Len])
		out.Body.Close()
		if err != nil {
			return fmt.Errorf("s3 store: read tail segment %s: %w", seg.Key, err)
		}
		dst = dst[seg.Len:]
	}
	return nil
}

// Reader implements registry.UploadStore. Parts of an unfinished multipart
// upload cannot be read, so when the session has parts the upload is
// completed first (the session can then only be committed or aborted).
func (s *Store) Reader(ctx context.Context, u *registry.Upload) (io.ReadCloser, error) {
	st, err := decodeState(u)
	if err != nil {
		return nil, err
	}
	e, _, err := st.at(u.Offset)
	if err != nil {
		return nil, err
	}
	if len(e.Parts) == 0 && !e.Done {
		pr, pw := io.Pipe()
		go func() {
			var err error
			for _, seg := range e.Tail {
				var out *s3.GetObjectOutput
				if seg.Len == 0 {
					continue
				}
				out, err = s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(seg.Key),
					Range: aws.String("bytes=0-" + strconv.FormatInt(seg.Len-1, 10))})
				if err != nil {
					break
				}
				_, err = io.Copy(pw, io.LimitReader(out.Body, seg.Len))
				out.Body.Close()
				if err != nil {
					break
				}
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
	if !e.Done {
		if err := s.complete(ctx, e); err != nil {
			return nil, err
		}
		e.Done, e.Prev = true, nil
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		u.Backend = b
	}
	if u.Offset == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &e.Key,
		Range: aws.String("bytes=0-" + strconv.FormatInt(u.Offset-1, 10))})
	if err != nil {
		return nil, fmt.Errorf("s3 store: read upload: %w", err)
	}
	return out.Body, nil
}

// complete turns the session into the blob's object: a session with
// parts uploads its tail as the last part and completes the multipart
// upload in place; one without parts (a blob smaller than a part) is
// written with one PutObject of its tail. Nothing is copied.
func (s *Store) complete(ctx context.Context, e *state) error {
	tail := tailBytes(e.Tail)
	if tail > s.partSize {
		return fmt.Errorf("s3 store: tail of %d bytes exceeds the part size", tail)
	}
	bp := s.getBuf()
	defer s.putBuf(bp)
	buf := (*bp)[:tail]
	if err := s.readTail(ctx, e.Tail, buf); err != nil {
		return err
	}
	if len(e.Parts) == 0 {
		in := &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &e.Key, Body: bytes.NewReader(buf), ContentLength: aws.Int64(tail),
			ContentType: aws.String("application/octet-stream"),
		}
		in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
		if _, err := s.client.PutObject(ctx, in); err != nil {
			return fmt.Errorf("s3 store: put blob: %w", err)
		}
		s.abortMPU(ctx, e.Key, e.MPU)
		return nil
	}
	parts := e.Parts
	if tail > 0 {
		p, err := s.uploadPart(ctx, e, buf)
		if err != nil {
			return err
		}
		parts = append(parts, p)
	}
	cp := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(p.N), ETag: aws.String(p.ETag)}
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &e.Key, UploadId: &e.MPU,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
	})
	if err != nil {
		return fmt.Errorf("s3 store: complete multipart upload: %w", err)
	}
	return nil
}

// Commit implements registry.UploadStore: the blob stays at the session's
// own key, which the metadata store records for d.
func (s *Store) Commit(ctx context.Context, u *registry.Upload, _ digest.Digest) (string, error) {
	prefix, err := s.uploadPrefix(u)
	if err != nil {
		return "", err
	}
	st, err := decodeState(u)
	if err != nil {
		return "", err
	}
	e, _, err := st.at(u.Offset)
	if err != nil {
		return "", err
	}
	if !e.Done {
		if err := s.complete(ctx, e); err != nil {
			// Committed before (its tail segments or its multipart upload
			// are gone with it) and the metadata commit failed: the
			// object at the session's own key, which nothing else
			// writes, is the blob. Commit is idempotent.
			if !s.committed(ctx, e.Key, u.Offset) {
				return "", err
			}
		}
	}
	s.deletePrefix(context.WithoutCancel(ctx), prefix)
	return e.Key, nil
}

// committed reports whether key holds a complete object of size bytes.
func (s *Store) committed(ctx context.Context, key string, size int64) bool {
	h, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	return err == nil && aws.ToInt64(h.ContentLength) == size
}

// Abort implements registry.UploadStore: it aborts the multipart upload
// (and any other one left at the blob's key by a request that failed),
// deletes the tail segments, and the object at the session's key if
// Reader or a Commit whose metadata was never recorded completed it
// (only the session writes there, and a recorded blob has no session
// left to abort). Aborting twice is not an error.
func (s *Store) Abort(ctx context.Context, u *registry.Upload) error {
	prefix, err := s.uploadPrefix(u)
	if err != nil {
		return err
	}
	key := s.BlobKey(u.ID)
	st, derr := decodeState(u)
	if derr == nil {
		key = st.Key
		s.abortMPU(ctx, key, st.MPU)
	}
	if err := s.Delete(ctx, key); err != nil {
		return err
	}
	if err := s.abortAllAt(ctx, key); err != nil {
		return err
	}
	return s.deletePrefix(ctx, prefix)
}

func (s *Store) abortMPU(ctx context.Context, key, id string) {
	_, _ = s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &id})
}

// abortAllAt aborts every multipart upload of exactly key.
func (s *Store) abortAllAt(ctx context.Context, key string) error {
	out, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &key})
	if err != nil {
		return fmt.Errorf("s3 store: list multipart uploads: %w", err)
	}
	for _, m := range out.Uploads {
		if aws.ToString(m.Key) == key {
			s.abortMPU(ctx, key, aws.ToString(m.UploadId))
		}
	}
	return nil
}

// deletePrefix deletes every object under prefix (a session's tail
// segments, including any written by a request whose state was never
// recorded).
func (s *Store) deletePrefix(ctx context.Context, prefix string) error {
	var token *string
	for range 1000 {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix, ContinuationToken: token})
		if err != nil {
			return fmt.Errorf("s3 store: list %s: %w", prefix, err)
		}
		keys := make([]string, 0, len(out.Contents))
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		s.deleteKeys(ctx, keys)
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		token = out.NextContinuationToken
	}
	return nil
}

// deleteKeys deletes objects, best effort (garbage collection of tails).
func (s *Store) deleteKeys(ctx context.Context, keys []string) {
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if n == 1 {
			_, _ = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &keys[0]})
		} else {
			ids := make([]types.ObjectIdentifier, n)
			for i, k := range keys[:n] {
				ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
			}
			_, _ = s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket,
				Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		}
		keys = keys[n:]
	}
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

// readErr remembers the first error other than io.EOF its reader returned.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wharf-registry/wharf/registry"
)

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

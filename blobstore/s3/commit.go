package s3

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
)

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
	s.keepDirs(ctx) // a session begun before a restart
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

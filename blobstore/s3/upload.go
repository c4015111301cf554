package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/wharf-registry/wharf/registry"
)

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
	s.keepDirs(ctx)
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
	s.keepDirs(ctx) // a session begun before a restart
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

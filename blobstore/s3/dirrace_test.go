package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/registry"
)

// TestSharedDirectoriesNeverEmpty: sessions at once, each writing a tail
// segment, committing (which deletes its segments) and deleting its blob,
// as pushes and GC do. MinIO removes a directory with its last object, up
// to the bucket, and a PUT below a directory being removed fails with
// AccessDenied (CI saw it once, in the GC load test): the store's
// markers keep uploads/ and blobs/ from ever emptying. Afterwards the
// markers are all that is left.
func TestSharedDirectoriesNeverEmpty(t *testing.T) {
	eachServer(t, testSharedDirectoriesNeverEmpty)
}

func testSharedDirectoriesNeverEmpty(t *testing.T, m *miniotest.Server) {
	s := newStore(t, m, "dirs/")
	const workers, sessions = 6, 60
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers*sessions)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range sessions {
				errs <- roundTrip(ctx, s, 100+w*sessions+i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed++; failed <= 3 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d sessions failed", failed, workers*sessions)
	}
	out, err := m.Client().ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &m.Bucket, Prefix: aws.String("dirs/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	slices.Sort(keys)
	if want := []string{"dirs/blobs/" + s3.KeepName, "dirs/uploads/" + s3.KeepName}; !slices.Equal(keys, want) {
		t.Fatalf("bucket holds %q, want only the markers %q", keys, want)
	}
}

// roundTrip uploads n random bytes as one tail segment, commits and
// deletes the blob.
func roundTrip(ctx context.Context, s *s3.Store, n int) error {
	u := &registry.Upload{ID: "u" + randHex() + randHex(), HashAlg: digest.SHA256}
	if err := s.Begin(ctx, u); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	data := make([]byte, n)
	_, _ = rand.Read(data)
	got, err := s.Append(ctx, u, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	u.Offset += got
	key, err := s.Commit(ctx, u, digest.FromBytes(data))
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

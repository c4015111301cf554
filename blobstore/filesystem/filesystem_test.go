package filesystem_test

import (
	"testing"

	"github.com/wharf-registry/wharf/blobstore/blobstoretest"
	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/registry"
)

func TestContract(t *testing.T) {
	roots := map[registry.BlobStore]string{}
	open := func(t *testing.T, dir string) registry.BlobStore {
		s, err := filesystem.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		roots[s] = dir
		return s
	}
	blobstoretest.Run(t,
		func(t *testing.T) registry.BlobStore { return open(t, t.TempDir()) },
		func(t *testing.T, s registry.BlobStore) registry.BlobStore { return open(t, roots[s]) },
	)
}

func TestInvalidKeys(t *testing.T) {
	s, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "../etc/passwd", "/etc/passwd", "blobs/../../x"} {
		if _, err := s.Open(t.Context(), key); err == nil {
			t.Errorf("Open(%q) succeeded", key)
		}
	}
}

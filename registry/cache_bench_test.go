package registry_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// benchRegistry is a real embedded registry holding one image, team/app:v1.
func benchRegistry(b *testing.B) (*registry.Registry, digest.Digest) {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	blobs, err := filesystem.New(filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	meta, err := sqlite.Open(ctx, filepath.Join(dir, "wharf.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { meta.Close() })
	reg := registry.New(meta, blobs, registry.Options{})
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd := digest.FromBytes(config)
	if _, err := reg.PutBlob(ctx, "team/app", cd, registry.Chunk{Body: bytes.NewReader(config), Start: -1, Length: int64(len(config))}); err != nil {
		b.Fatal(err)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[]}`,
		oci.MediaTypeOCIManifest, cd, len(config))
	if _, err := reg.PutManifest(ctx, "team/app", oci.Reference{Tag: "v1"}, oci.MediaTypeOCIManifest, []byte(m)); err != nil {
		b.Fatal(err)
	}
	return reg, cd
}

// benchParallel measures op run from as many goroutines as there are
// cores, failing b on its first error.
func benchParallel(b *testing.B, op func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkManifestCacheHit is the manifest GET hot path: a tag served
// from the cache, from as many goroutines as there are cores.
func BenchmarkManifestCacheHit(b *testing.B) {
	reg, _ := benchRegistry(b)
	ctx, ref := context.Background(), oci.Reference{Tag: "v1"}
	if _, err := reg.Manifest(ctx, "team/app", ref); err != nil {
		b.Fatal(err)
	}
	benchParallel(b, func() error { _, err := reg.Manifest(ctx, "team/app", ref); return err })
}

// BenchmarkStatBlobCacheHit is the blob GET hot path's lookup.
func BenchmarkStatBlobCacheHit(b *testing.B) {
	reg, d := benchRegistry(b)
	ctx := context.Background()
	benchParallel(b, func() error { _, err := reg.StatBlob(ctx, "team/app", d); return err })
}

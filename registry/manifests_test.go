package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// manyLayers is an image manifest whose config is cfg and whose n layers
// all have distinct digests that no repository holds.
func manyLayers(tb testing.TB, cfg digest.Digest, n int) []byte {
	tb.Helper()
	type desc struct {
		MediaType string        `json:"mediaType,omitempty"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
	layers := make([]desc, n)
	for i := range layers {
		layers[i] = desc{"", digest.FromString(fmt.Sprint("layer ", i)), 1}
	}
	b, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest,
		"config": desc{"application/vnd.oci.image.config.v1+json", cfg, 2}, "layers": layers,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkPutManifestManyLayers is the cost of refusing a manifest that
// lists many distinct layers the repository does not hold: the largest
// the size limit admits (37,500 layers in 4 MiB) and one at the default
// reference limit (9,999 layers and a config). Either must cost time linear in its size.
func BenchmarkPutManifestManyLayers(b *testing.B) {
	r := wharftest.Start(b)
	ctx := context.Background()
	cfg := digest.FromString("{}")
	if _, err := r.Registry.PutBlob(ctx, "bench/app", cfg, registry.Chunk{Body: strings.NewReader("{}"), Start: -1, Length: 2}); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{37500, 9999} {
		m := manyLayers(b, cfg, n)
		if len(m) > 4<<20 {
			b.Fatalf("%d layers make %d bytes, over the default manifest limit", n, len(m))
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				_, err := r.Registry.PutManifest(ctx, "bench/app", oci.Reference{Tag: "many"}, oci.MediaTypeOCIManifest, m)
				if err == nil {
					b.Fatal("a manifest with missing layers was stored")
				}
			}
		})
	}
}

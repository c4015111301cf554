package gc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/gc"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/metadata/postgres"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// BenchmarkCollectPostgres: one pass over a registry of WHARFDEV_GC_BENCH_BLOBS
// (10,000) blobs of which half are unreferenced (the rest referenced by
// manifests of 10 layers, tagged), on pgtest PostgreSQL. Reports the
// collected blobs per second of the pass.
func BenchmarkCollectPostgres(b *testing.B) {
	total := 10000
	if v, err := strconv.Atoi(os.Getenv("WHARFDEV_GC_BENCH_BLOBS")); err == nil && v > 0 {
		total = v
	}
	const layers = 10
	for b.Loop() {
		b.StopTimer()
		s, err := postgres.Open(context.Background(), postgres.Options{DSN: pgtest.DSN(b), MaxConns: 16})
		if err != nil {
			b.Fatal(err)
		}
		root := filepath.Join(b.TempDir(), "blobs")
		blobs, err := filesystem.New(root)
		if err != nil {
			b.Fatal(err)
		}
		e := &env{reg: registry.New(s, blobs, registry.Options{}), store: s, meta: s, blobs: blobs, root: root}
		ds := make([]digest.Digest, total)
		var wg sync.WaitGroup
		const workers = 8
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < total; i += workers {
					ds[i] = e.putBlob(b, "bench/app", fmt.Appendf(nil, "blob %d %d", i, time.Now().UnixNano()))
				}
			}()
		}
		wg.Wait()
		ctx := context.Background()
		for m := 0; m < total/2/layers; m++ {
			ls := map[digest.Digest]int{}
			for _, d := range ds[m*layers+1 : (m+1)*layers] {
				ls[d] = 1
			}
			man := image(ds[m*layers], 1, ls)
			if _, err := e.reg.PutManifest(ctx, "bench/app", oci.Reference{Tag: fmt.Sprintf("t%d", m)}, oci.MediaTypeOCIManifest, man); err != nil {
				b.Fatal(err)
			}
		}
		col := gc.New(s, blobs, gc.Options{Now: later(48 * time.Hour)})
		b.StartTimer()
		start := time.Now()
		res, err := col.Run(ctx)
		el := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Blobs) != total-total/2 || res.ObjectsGone != len(res.Blobs) {
			b.Fatalf("collected %d blobs, %d objects; want %d", len(res.Blobs), res.ObjectsGone, total-total/2)
		}
		b.ReportMetric(float64(len(res.Blobs))/el.Seconds(), "blobs/s")
		s.Close()
		b.StartTimer()
	}
}

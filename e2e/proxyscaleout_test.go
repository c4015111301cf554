package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// TestProxyScaleOut: the pull-through cache in the scale-out shape, two
// replicas over one PostgreSQL and one MinIO bucket. 50 clients split
// over both pull one uncached image at once: every pull gets upstream's
// digest, and upstream sees at most one GET per blob per replica (each
// replica coalesces its own clients; across replicas a blob may be
// fetched once by each, the second store of the same bytes dropped).
// After that, both replicas serve the image without an upstream GET.
func TestProxyScaleOut(t *testing.T) {
	dsn := pgtest.DSN(t)
	m := miniotest.Start(t)
	dist := wharftest.StartDistribution(t)
	front := newUpstreamFront(t, dist.URL)
	t.Cleanup(remote.DefaultTransport.(*http.Transport).CloseIdleConnections)
	ttl := time.Hour
	shape := func(c *config.Config) {
		c.Metadata.Driver, c.Metadata.Postgres.DSN = config.MetadataPostgres, dsn
		c.Storage.Driver = "s3"
		c.Storage.S3 = config.S3{Endpoint: m.Endpoint, Region: miniotest.Region, Bucket: m.Bucket, Prefix: "wharf/",
			AccessKey: m.AccessKey, SecretKey: m.SecretKey, PathStyle: true, PartSize: 5 << 20}
		c.Proxy.Upstreams = []config.Upstream{{Prefix: "dist", URL: front.URL, TagTTL: &ttl, Timeout: 10 * time.Second}}
	}
	replicas := []*proxyFixture{
		{dist: dist, front: front, wharf: wharftest.Start(t, wharftest.Options{Config: shape})},
		{dist: dist, front: front, wharf: wharftest.Start(t, wharftest.Options{Config: shape})},
	}
	img := randomImage(t, 5, true)
	replicas[0].pushUpstream(t, "team/many:v1", img)
	want, _ := img.Digest()
	front.reset()
	const clients = 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := replicas[i%2].pull(t, "dist/team/many:v1")
			if err == nil && got != want {
				err = fmt.Errorf("replica %d: digest %s, want %s", i%2, got, want)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	const blobs = 6 // 5 layers and the config
	gets, manifests := front.count("GET blob"), front.count("GET manifest")
	t.Logf("%d clients over 2 replicas: %d upstream blob GETs for %d blobs (%.2f per blob), %d manifest GETs",
		clients, gets, blobs, float64(gets)/blobs, manifests)
	if gets < blobs || gets > 2*blobs {
		t.Errorf("upstream blob GETs: %d, want %d to %d (one per blob per replica at most)", gets, blobs, 2*blobs)
	}
	if manifests < 1 || manifests > 2 {
		t.Errorf("upstream manifest GETs: %d, want 1 or 2", manifests)
	}
	front.reset()
	for i, r := range replicas {
		if got, err := r.pull(t, "dist/team/many:v1"); err != nil || got != want {
			t.Errorf("replica %d, cached: %s, %v", i, got, err)
		}
	}
	if n := front.count("GET blob") + front.count("GET manifest"); n != 0 {
		t.Errorf("the cached image went upstream again: %d GETs", n)
	}
}

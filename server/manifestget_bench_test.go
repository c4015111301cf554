package server_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/wharftest"
)

// BenchmarkManifestGET is the manifest GET hot path over real HTTP: a
// tag answered from the manifest cache.
func BenchmarkManifestGET(b *testing.B) {
	r := wharftest.Start(b)
	c := &http.Client{}
	b.Cleanup(c.CloseIdleConnections)
	do := func(method, path, ct string, body []byte) {
		req, _ := http.NewRequest(method, r.URL+path, bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	config := []byte(`{}`)
	d := digest.FromBytes(config)
	do(http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+d.String(), "", config)
	do(http.MethodPut, "/v2/team/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifestJSON(b, d, len(config)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		do(http.MethodGet, "/v2/team/app/manifests/v1", "", nil)
	}
}

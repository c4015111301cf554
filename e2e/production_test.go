package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/ratelimit"
	"github.com/wharf-registry/wharf/server"
)

// scrape reads /metrics over HTTP.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the counter, gauge or histogram count of name with labels
// (name=value pairs; missing labels match anything), summed.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func histSum(fams map[string]*dto.MetricFamily, name string) float64 {
	var s float64
	if f := fams[name]; f != nil {
		for _, m := range f.Metric {
			s += m.Histogram.GetSampleSum()
		}
	}
	return s
}

func TestMetricsAfterPushAndPull(t *testing.T) {
	reg := wharftest.Start(t, wharftest.Options{})
	r := &testRegistry{Registry: reg, rec: &recorder{next: http.DefaultTransport}}
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := r.ref(t, "metrics/app:v1")
	before := scrape(t, reg.URL)
	if err := remote.Write(ref, img, r.opts(t)...); err != nil {
		t.Fatal(err)
	}
	pushed := scrape(t, reg.URL)
	pulled, err := remote.Image(ref, r.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := pulled.Layers()
	var blobBytes int64
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, rc)
		rc.Close()
		blobBytes += n
	}
	after := scrape(t, reg.URL)

	// Count the registry's own view of what the client did, from the recorder.
	count := func(method, route string) float64 {
		return float64(len(r.rec.find(func(e exchange) bool {
			return e.Method == method && server.ParseV2Path(e.URL.Path).Route.String() == route && e.Status/100 == 2
		})))
	}
	req := "wharf_http_requests_total"
	manifest := "/v2/{name}/manifests/{reference}"
	if d := value(pushed, req, "route", manifest, "method", "PUT", "code", "2xx") - value(before, req, "route", manifest, "method", "PUT", "code", "2xx"); d != 1 {
		t.Errorf("manifest PUTs counted: %v, want 1", d)
	}
	if d := value(pushed, "wharf_store_operation_duration_seconds", "store", "metadata", "op", "put_manifest") - value(before, "wharf_store_operation_duration_seconds", "store", "metadata", "op", "put_manifest"); d != 1 {
		t.Errorf("metadata put_manifest ops: %v, want 1", d)
	}
	if d := value(pushed, "wharf_store_operation_duration_seconds", "store", "blob", "op", "upload_commit") - value(before, "wharf_store_operation_duration_seconds", "store", "blob", "op", "upload_commit"); d != 3 {
		t.Errorf("blob upload commits: %v, want 3 (config and 2 layers)", d)
	}
	blob := "/v2/{name}/blobs/{digest}"
	wantGets := count("GET", blob)
	if d := value(after, req, "route", blob, "method", "GET", "code", "2xx") - value(pushed, req, "route", blob, "method", "GET", "code", "2xx"); d != wantGets || d < 2 {
		t.Errorf("blob GETs counted: %v, want %v (>= 2)", d, wantGets)
	}
	if d := value(after, req, "route", manifest, "method", "GET", "code", "2xx") - value(pushed, req, "route", manifest, "method", "GET", "code", "2xx"); d != count("GET", manifest) || d < 1 {
		t.Errorf("manifest GETs counted: %v, want %v", d, count("GET", manifest))
	}
	if d := value(after, "wharf_http_response_bytes_total", "route", blob) - value(pushed, "wharf_http_response_bytes_total", "route", blob); d < float64(blobBytes) {
		t.Errorf("blob bytes out: %v, want >= %d", d, blobBytes)
	}
	if d := value(pushed, "wharf_http_request_bytes_total") - value(before, "wharf_http_request_bytes_total"); d < float64(blobBytes) {
		t.Errorf("bytes in during the push: %v, want >= %d", d, blobBytes)
	}
	if d := value(after, "wharf_auth_requests_total", "result", "success") - value(before, "wharf_auth_requests_total", "result", "success"); d < 6 {
		t.Errorf("auth successes: %v, want one per request", d)
	}
	if v := value(after, "wharf_uploads_in_progress"); v != 0 {
		t.Errorf("uploads in progress after the push: %v", v)
	}
	if value(after, "go_goroutines") == 0 {
		t.Error("no Go runtime metrics")
	}

	// The batch endpoint: one call, 3 blobs, 3 signatures (cache misses);
	// a second call for another expiry hits the signature cache.
	resp := do(t, "GET", reg.URL+"/v2/metrics/app/manifests/v1/blobs?expiry=600", nil)
	expectStatus(t, "batch", resp, 200)
	b1 := scrape(t, reg.URL)
	if d := value(b1, "wharf_batch_requests_total") - value(after, "wharf_batch_requests_total"); d != 1 {
		t.Errorf("batch calls: %v, want 1", d)
	}
	if d := histSum(b1, "wharf_batch_blobs") - histSum(after, "wharf_batch_blobs"); d != 3 {
		t.Errorf("batch blobs: %v, want 3", d)
	}
	if d := value(b1, "wharf_signer_calls_total", "result", "ok") - value(after, "wharf_signer_calls_total", "result", "ok"); d != 3 {
		t.Errorf("signer calls: %v, want 3", d)
	}
	if d := value(b1, "wharf_signature_cache_misses_total") - value(after, "wharf_signature_cache_misses_total"); d != 3 {
		t.Errorf("signature cache misses: %v, want 3", d)
	}
	// The same image in another repository: its batch answer is not
	// cached, its signatures are (same blobs, same expiry bucket, barring
	// a bucket edge between the calls: then the next try hits).
	if err := remote.Write(r.ref(t, "metrics/copy:v1"), img, r.opts(t)...); err != nil {
		t.Fatal(err)
	}
	hit := false
	for i := 0; i < 3 && !hit; i++ {
		prev := scrape(t, reg.URL)
		expectStatus(t, "batch", do(t, "GET", reg.URL+"/v2/metrics/copy/manifests/v1/blobs?expiry=600", nil), 200)
		cur := scrape(t, reg.URL)
		hits := value(cur, "wharf_signature_cache_hits_total") - value(prev, "wharf_signature_cache_hits_total")
		calls := value(cur, "wharf_signer_calls_total") - value(prev, "wharf_signer_calls_total")
		hit = hits == 3 && calls == 0
		if !hit {
			expectStatus(t, "batch", do(t, "GET", reg.URL+"/v2/metrics/app/manifests/v1/blobs?expiry=600", nil), 200)
		}
	}
	if !hit {
		t.Error("a batch call for signed blobs did not hit the signature cache (3 hits, 0 signer calls)")
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
}

func TestMetricsRouteLabelsBounded(t *testing.T) {
	reg := wharftest.Start(t, wharftest.Options{})
	c := &http.Client{}
	for i := 0; i < 1000; i++ {
		for _, p := range []string{"/v2/repo%d/manifests/latest", "/v2/org/repo%d/blobs/sha256:" + strings.Repeat("a", 64), "/v2/r%d/tags/list", "/nope/%d"} {
			resp, err := c.Get(reg.URL + fmt.Sprintf(p, i))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	fams := scrape(t, reg.URL)
	for _, name := range []string{"wharf_http_requests_total", "wharf_http_request_duration_seconds", "wharf_http_response_bytes_total"} {
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s", name)
		}
		if n := len(f.Metric); n > 12 {
			t.Errorf("%s has %d series after 4000 requests to 3000 repositories, want a handful", name, n)
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "repo") || strings.Contains(l.GetValue(), "nope") {
					t.Errorf("%s label %s=%q carries a raw path", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	if v := value(fams, "wharf_http_requests_total", "route", "/v2/{name}/manifests/{reference}", "code", "4xx"); v != 1000 {
		t.Errorf("manifest 404s counted: %v, want 1000", v)
	}
}

// waitReady polls /readyz (bounded) until it answers want.
func waitReady(t *testing.T, base string, want int) {
	t.Helper()
	if last, ok := wharftest.WaitStatus(base+"/readyz", want, 5*time.Second); !ok {
		t.Fatalf("/readyz answered %d for 5s, want %d", last, want)
	}
}

func TestReadyzEmbeddedStores(t *testing.T) {
	reg := wharftest.Start(t, wharftest.Options{})
	if resp := do(t, "GET", reg.URL+"/livez", nil); resp.Status != 200 {
		t.Fatalf("/livez: %d", resp.Status)
	}
	waitReady(t, reg.URL, 200)

	// The SQLite file goes away (a lost volume): not ready; back: ready.
	db := filepath.Join(reg.Dir, "wharf.db")
	if err := os.Rename(db, db+".away"); err != nil {
		t.Fatal(err)
	}
	waitReady(t, reg.URL, 503)
	if err := os.Rename(db+".away", db); err != nil {
		t.Fatal(err)
	}
	waitReady(t, reg.URL, 200)

	// Unreadable (only meaningful when not root: root reads anyway).
	if os.Geteuid() != 0 {
		if err := os.Chmod(db, 0); err != nil {
			t.Fatal(err)
		}
		waitReady(t, reg.URL, 503)
		if err := os.Chmod(db, 0o644); err != nil {
			t.Fatal(err)
		}
		waitReady(t, reg.URL, 200)
	}

	// The blob directory removed and restored.
	blobs := filepath.Join(reg.Dir, "blobs")
	if err := os.Rename(blobs, blobs+".away"); err != nil {
		t.Fatal(err)
	}
	waitReady(t, reg.URL, 503)
	resp := do(t, "GET", reg.URL+"/readyz", nil)
	if !strings.Contains(string(resp.Body), `"blobs"`) {
		t.Errorf("/readyz body does not name the failing check: %s", resp.Body)
	}
	if err := os.Rename(blobs+".away", blobs); err != nil {
		t.Fatal(err)
	}
	waitReady(t, reg.URL, 200)

	// Shutdown starts: unready at once.
	reg.Health.Drain()
	if resp := do(t, "GET", reg.URL+"/readyz", nil); resp.Status != 503 {
		t.Fatalf("/readyz while draining: %d", resp.Status)
	}
}

func TestRateLimit429AndClientBacksOff(t *testing.T) {
	lim := ratelimit.New(map[string]ratelimit.Rule{server.ActionPull: {PerSecond: 4, Burst: 4}}, 100, nil)
	reg := wharftest.Start(t, wharftest.Options{Server: func(o *server.Options) { o.Limiter = lim }})
	r := &testRegistry{Registry: reg, rec: &recorder{next: http.DefaultTransport}}
	img, err := random.Image(500, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := r.ref(t, "limited/app:v1")
	if err := remote.Write(ref, img, r.opts(t)...); err != nil {
		t.Fatal(err)
	}

	var limited *response
	for i := 0; i < 20 && limited == nil; i++ {
		resp := do(t, "GET", reg.URL+"/v2/limited/app/manifests/v1", nil)
		if resp.Status == http.StatusTooManyRequests {
			limited = resp
		}
	}
	if limited == nil {
		t.Fatal("20 pulls at once were never limited (4/s, burst 4)")
	}
	expectError(t, "rate limited", limited, 429, "TOOMANYREQUESTS")
	if ra := limited.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	fams := scrape(t, reg.URL)
	if v := value(fams, "wharf_http_throttled_total", "reason", "rate"); v < 1 {
		t.Errorf("throttled counted: %v", v)
	}

	// go-containerregistry backs off on 429 and completes: a pull of the
	// manifest and 4 blobs with the bucket empty.
	start := time.Now()
	pulled, err := remote.Image(ref, r.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := pulled.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer after backing off: %v", err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	if _, err := pulled.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	n429 := len(r.rec.find(func(e exchange) bool { return e.Status == 429 }))
	t.Logf("pull completed in %s after %d answers 429", time.Since(start).Round(time.Millisecond), n429)
}

func TestConcurrentUploadCap(t *testing.T) {
	reg := wharftest.Start(t, wharftest.Options{Server: func(o *server.Options) { o.MaxUploads = 1 }})
	loc := startUpload(t, reg.URL, "capped/app")
	pr, pw := io.Pipe()
	// Runs before the server's cleanup: an open PATCH would keep it waiting.
	t.Cleanup(func() { pw.Close() })
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("PATCH", loc, pr)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte("first bytes")); err != nil {
		t.Fatal(err)
	}
	// The kernel takes the bytes before the server reads the request: wait
	// until the server counts the PATCH as an upload in progress.
	deadline := time.Now().Add(15 * time.Second)
	for value(scrape(t, reg.URL), "wharf_uploads_in_progress") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first PATCH never became an upload in progress")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The PATCH is in progress: a second upload is refused.
	got := do(t, "POST", reg.URL+"/v2/capped/app/blobs/uploads/?digest=sha256:"+strings.Repeat("0", 64), []byte("x"))
	expectError(t, "second upload", got, 429, "TOOMANYREQUESTS")
	if got.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if v := value(scrape(t, reg.URL), "wharf_uploads_in_progress"); v != 1 {
		t.Errorf("uploads in progress: %v, want 1", v)
	}
	pw.Close()
	if s := <-done; s != http.StatusAccepted {
		t.Errorf("first upload: %d", s)
	}
}

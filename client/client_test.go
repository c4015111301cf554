package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/internal/fakeclock"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/registry"
)

// clock is the injectable time source shared by the registry and (in some
// tests) the client.

func push(t *testing.T, host, repoTag string, layerSize int64, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(layerSize, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// front serves a registry's handler on a new loopback port through wrap;
// the registry builds its URLs from the Host it is asked for, so signed
// URLs point back at the front and every byte passes through wrap.
// metered starts a registry on a fake clock (redirecting blob GETs or
// not) behind a metering front; host is the front's.
func metered(t *testing.T, redirect bool) (clk *fakeclock.Clock, m *meter, host string) {
	t.Helper()
	clk = fakeclock.New()
	r := wharftest.Start(t, wharftest.Options{Registry: registry.Options{Now: clk.Now}, Redirect: redirect})
	m = &meter{}
	return clk, m, strings.TrimPrefix(front(t, r, m.wrap).URL, "http://")
}

func front(t *testing.T, r *wharftest.Registry, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(wrap(r.Handler))
	t.Cleanup(s.Close)
	return s
}

// meter counts what a front serves.
type meter struct {
	frontend  atomic.Int64 // requests to /v2/
	blobBytes atomic.Int64 // body bytes of signed downloads and blob GETs
	// onWrite may advance a clock or cut the connection (panic
	// http.ErrAbortHandler after flushing).
	onWrite func(r *http.Request, w http.ResponseWriter, written int64, b []byte) []byte
}

func (m *meter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/") {
			m.frontend.Add(1)
		}
		if r.Method == http.MethodGet && (strings.HasPrefix(r.URL.Path, "/_wharf/blobs/") || strings.Contains(r.URL.Path, "/blobs/sha256:")) {
			w = &meteredWriter{ResponseWriter: w, m: m, r: r}
		}
		next.ServeHTTP(w, r)
	})
}

type meteredWriter struct {
	http.ResponseWriter
	m       *meter
	r       *http.Request
	written int64
	status  int
}

func (w *meteredWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *meteredWriter) Write(b []byte) (int, error) {
	if w.status != 0 && w.status != 200 && w.status != 206 {
		return w.ResponseWriter.Write(b)
	}
	if w.m.onWrite != nil {
		b = w.m.onWrite(w.r, w, w.written, b)
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	w.m.blobBytes.Add(int64(n))
	return n, err
}

func (w *meteredWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func imageSize(t *testing.T, img v1.Image) (total int64, n int) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	total = m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, len(m.Layers) + 1
}

// checkLayout reads the pulled image back from the layout and compares
// every digest with the pushed image.
// pullChecked pulls ref with c into a fresh directory and checks that
// the layout holds img.
func pullChecked(t *testing.T, c *client.Client, ref string, img v1.Image) *client.Result {
	t.Helper()
	dir := t.TempDir()
	res, err := c.Pull(context.Background(), ref, dir, client.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dir, img)
	return res
}

func checkLayout(t *testing.T, dir string, img v1.Image) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	got, err := p.Image(want)
	if err != nil {
		t.Fatalf("image %s not in layout: %v", want, err)
	}
	wl, _ := img.Layers()
	gl, err := got.Layers()
	if err != nil || len(gl) != len(wl) {
		t.Fatalf("layers: %d, want %d (%v)", len(gl), len(wl), err)
	}
	for i := range wl {
		wd, _ := wl[i].Digest()
		gd, _ := gl[i].Digest()
		if wd != gd {
			t.Errorf("layer %d: %s, want %s", i, gd, wd)
		}
		if err := verifyBlob(filepath.Join(dir, "blobs", "sha256", gd.Hex), gd.String()); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".wharf-partial")); !os.IsNotExist(err) {
		t.Errorf("partial directory left behind: %v", err)
	}
}

func verifyBlob(path, d string) error {
	h, err := v1.NewHash(d)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, _, err := v1.SHA256(f)
	if err != nil {
		return err
	}
	if got != h {
		return errors.New(path + ": digest mismatch")
	}
	return nil
}

func TestPullUsesOneFrontendRequest(t *testing.T) {
	r := wharftest.Start(t)
	m := &meter{}
	fr := front(t, r, m.wrap)
	host := strings.TrimPrefix(fr.URL, "http://")
	img := push(t, host, "demo/app:v1", 4096, 5)
	m.frontend.Store(0)

	c := client.New(client.Options{})
	dir := t.TempDir()
	res, err := c.Pull(context.Background(), host+"/demo/app:v1", dir, client.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dir, img)
	st := c.Stats()
	if !res.Batch || st.Requests != 1 || m.frontend.Load() != 1 {
		t.Errorf("batch %v, client counted %d requests, registry saw %d; want batch and 1", res.Batch, st.Requests, m.frontend.Load())
	}
	total, n := imageSize(t, img)
	if st.Bytes != total || st.Blobs != int64(n) {
		t.Errorf("stats %+v, want %d bytes in %d blobs", st, total, n)
	}
	// pulling again keeps the verified blobs: no bytes move
	c2 := client.New(client.Options{})
	if _, err := c2.Pull(context.Background(), host+"/demo/app:v1", dir, client.Selection{}); err != nil {
		t.Fatal(err)
	}
	if st := c2.Stats(); st.Bytes != 0 || st.Skipped != int64(n) {
		t.Errorf("second pull: %+v", st)
	}
}

// throttle makes signed downloads slow in the registry's time: every
// byte written advances the clock by 1/rate seconds.
func throttle(clk *fakeclock.Clock, bytesPerSecond float64) func(*http.Request, http.ResponseWriter, int64, []byte) []byte {
	return func(_ *http.Request, _ http.ResponseWriter, _ int64, b []byte) []byte {
		clk.Advance(time.Duration(float64(len(b)) / bytesPerSecond * float64(time.Second)))
		return b
	}
}

// The scenario: 15 layers, URLs valid for the shortest allowed
// expiry (60 s), one download at a time, each layer taking ~10 s, so the
// later URLs of a batch answer expire before their turn.
func TestExpiryScenario(t *testing.T) {
	const layerSize = 64 << 10
	run := func(t *testing.T, disable bool) (client.Stats, v1.Image, string, error) {
		clk, m, host := metered(t, true)
		img := push(t, host, "slow/app:v1", layerSize, 15)
		m.onWrite = throttle(clk, layerSize/10.0)
		c := client.New(client.Options{Jobs: 1, Expiry: 60 * time.Second, Now: clk.Now, DisableReResolve: disable})
		dir := t.TempDir()
		_, err := c.Pull(context.Background(), host+"/slow/app:v1", dir, client.Selection{})
		return c.Stats(), img, dir, err
	}
	t.Run("resolve-up-front-fails", func(t *testing.T) {
		st, _, _, err := run(t, true)
		if !errors.Is(err, client.ErrURLExpired) {
			t.Fatalf("a client that resolves every URL up front must fail with an expiry error; got %v (stats %+v)", err, st)
		}
		t.Logf("naive client: %v", err)
	})
	t.Run("re-resolving-completes", func(t *testing.T) {
		st, img, dir, err := run(t, false)
		if err != nil {
			t.Fatal(err)
		}
		checkLayout(t, dir, img)
		if st.ReResolutions == 0 {
			t.Errorf("no re-resolutions: %+v", st)
		}
		t.Logf("stats: %+v", st)
	})
}

// The client's clock knows nothing of the registry's: every refusal is
// discovered by a 403, after which the client gets fresh URLs and goes on.
func TestExpiredURLRefusedThenReResolved(t *testing.T) {
	const layerSize = 32 << 10
	clk, m, host := metered(t, false)
	img := push(t, host, "slow/app:v1", layerSize, 8)
	m.onWrite = throttle(clk, layerSize/25.0)
	c := client.New(client.Options{Jobs: 1, Expiry: 60 * time.Second})
	pullChecked(t, c, host+"/slow/app:v1", img)
	st := c.Stats()
	total, _ := imageSize(t, img)
	if st.ReResolutions == 0 || m.blobBytes.Load() != total {
		t.Errorf("re-resolutions %d (want > 0), bytes served %d (want %d)", st.ReResolutions, m.blobBytes.Load(), total)
	}
}

// A connection cut in the middle of a blob, after which the URL has also
// expired: the client gets a fresh URL and asks for the rest with Range;
// every byte is served once.
func TestResumeAfterConnectionCut(t *testing.T) {
	const layerSize = 256 << 10
	clk, m, host := metered(t, false)
	img := push(t, host, "cut/app:v1", layerSize, 3)
	layers, _ := img.Layers()
	victim, _ := layers[1].Digest()
	var cut sync.Once
	var ranges atomic.Int64
	m.onWrite = func(r *http.Request, w http.ResponseWriter, written int64, b []byte) []byte {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		if strings.Contains(r.URL.Path, victim.String()) && written+int64(len(b)) > layerSize/2 {
			cutNow := false
			cut.Do(func() { cutNow = true })
			if cutNow {
				keep := b[:layerSize/2-written]
				_, _ = w.(*meteredWriter).ResponseWriter.Write(keep)
				m.blobBytes.Add(int64(len(keep)))
				w.(http.Flusher).Flush()
				clk.Advance(2 * time.Minute) // and the URL expires meanwhile
				panic(http.ErrAbortHandler)
			}
		}
		return b
	}
	c := client.New(client.Options{Jobs: 2, Expiry: 60 * time.Second, Now: func() time.Time { return time.Now() }})
	pullChecked(t, c, host+"/cut/app:v1", img)
	total, _ := imageSize(t, img)
	st := c.Stats()
	if got := m.blobBytes.Load(); got != total {
		t.Errorf("served %d bytes, want each of the %d bytes once", got, total)
	}
	if st.Bytes != total || st.Resumed == 0 || st.ReResolutions == 0 || ranges.Load() == 0 {
		t.Errorf("stats %+v, range requests %d: want a resumed, re-resolved download", st, ranges.Load())
	}
}

// A download interrupted by the process ending (the partial file stays)
// is continued by the next pull with Range.
func TestResumePartialFileFromEarlierRun(t *testing.T) {
	r := wharftest.Start(t)
	m := &meter{}
	fr := front(t, r, m.wrap)
	host := strings.TrimPrefix(fr.URL, "http://")
	img := push(t, host, "part/app:v1", 100<<10, 2)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	defer rc.Close()
	half := make([]byte, 30<<10)
	if _, err := ioReadFull(rc, half); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".wharf-partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".wharf-partial", "sha256-"+d.Hex), half, 0o644); err != nil {
		t.Fatal(err)
	}
	c := client.New(client.Options{})
	if _, err := c.Pull(context.Background(), host+"/part/app:v1", dir, client.Selection{}); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dir, img)
	total, _ := imageSize(t, img)
	if got := m.blobBytes.Load(); got != total-int64(len(half)) {
		t.Errorf("served %d bytes, want %d (the partial file's %d not again)", got, total-int64(len(half)), len(half))
	}
}

// The registry front demands Basic auth and redirects blob GETs to
// storage on another port of the same host: Go's http.Client would carry
// Authorization there (it compares host names, not ports); the client
// must not.
func TestRedirectNeverCarriesRegistryCredentials(t *testing.T) {
	r := wharftest.Start(t, wharftest.Options{Redirect: true})
	var leaked, storageHits atomic.Int64
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		storageHits.Add(1)
		if req.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		r.Handler.ServeHTTP(w, req)
	}))
	defer storage.Close()
	storageHost := strings.TrimPrefix(storage.URL, "http://")
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "alice" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="wharf"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		req.Host = storageHost // signed URLs and redirects point at "storage"
		r.Handler.ServeHTTP(w, req)
	}))
	defer reg.Close()
	regHost := strings.TrimPrefix(reg.URL, "http://")
	img := push(t, r.Host, "auth/app:v1", 4096, 3)

	// what plain net/http does with such a redirect, for the record
	req, _ := http.NewRequest("GET", reg.URL+"/v2/auth/app/blobs/"+mustDigest(t, img), nil)
	req.SetBasicAuth("alice", "secret")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Logf("net/http alone forwarded Authorization across ports: %v", leaked.Load() > 0)
	}
	leaked.Store(0)

	for _, noBatch := range []bool{true, false} {
		c := client.New(client.Options{Keychain: client.StaticKeychain("alice", "secret"), DisableBatch: noBatch})
		dir := t.TempDir()
		before := storageHits.Load()
		if _, err := c.Pull(context.Background(), regHost+"/auth/app:v1", dir, client.Selection{}); err != nil {
			t.Fatalf("noBatch=%v: %v", noBatch, err)
		}
		checkLayout(t, dir, img)
		if storageHits.Load() == before {
			t.Errorf("noBatch=%v: nothing was downloaded from storage", noBatch)
		}
	}
	if leaked.Load() != 0 {
		t.Errorf("%d storage requests carried the registry's Authorization header", leaked.Load())
	}
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	ls, _ := img.Layers()
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// 429 with Retry-After and a 503 are waited out.
func TestRetryAfterAndServerErrors(t *testing.T) {
	r := wharftest.Start(t)
	var n atomic.Int64
	fr := front(t, r, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			switch n.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			case 3:
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, req)
		})
	})
	host := strings.TrimPrefix(fr.URL, "http://")
	img := push(t, r.Host, "retry/app:v1", 2048, 2)
	n.Store(0)
	c := client.New(client.Options{Jobs: 1})
	dir := t.TempDir()
	start := time.Now()
	if _, err := c.Pull(context.Background(), host+"/retry/app:v1", dir, client.Selection{}); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dir, img)
	if time.Since(start) < time.Second {
		t.Errorf("Retry-After: 1 not honoured")
	}
	if st := c.Stats(); st.Retries < 2 {
		t.Errorf("retries %d, want 2", st.Retries)
	}
}

func ioReadFull(r interface{ Read([]byte) (int, error) }, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

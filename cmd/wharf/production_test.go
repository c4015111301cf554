package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/freeport"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// startServe runs serve in-process with short timeouts until the test ends.
func startServe(t *testing.T, edit func(*config.Config)) (addr, maddr string, stop func()) {
	t.Helper()
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = freeport.MustAddr(t), t.TempDir()
	cfg.Log.Format = "json"
	cfg.Log.Level = "warn"
	cfg.Metrics.Addr, cfg.Metrics.Pprof = freeport.MustAddr(t), true
	cfg.HTTP.ReadHeaderTimeout = 500 * time.Millisecond
	cfg.HTTP.TransferIdleTimeout = 500 * time.Millisecond
	cfg.HTTP.RequestTimeout = 2 * time.Second
	cfg.HTTP.DrainDelay = 700 * time.Millisecond
	cfg.HTTP.TrustedProxies = "10.0.0.0/8"
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, nil) }()
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", cfg.Addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	}
	t.Cleanup(stop)
	return cfg.Addr, cfg.Metrics.Addr, stop
}

func TestSlowlorisHeadersDisconnected(t *testing.T) {
	addr, _, _ := startServe(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	req := "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
	var werr error
	for i := 0; i < len(req) && werr == nil && time.Since(start) < 5*time.Second; i++ {
		_, werr = c.Write([]byte{req[i]})
		time.Sleep(50 * time.Millisecond)
		// The server closes the connection: a read sees EOF or a reset.
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil && !isTimeout(err) {
			werr = err
		}
	}
	if werr == nil {
		t.Fatalf("a client sending headers byte by byte was still connected after %s", time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("disconnected after %s, want about the 500ms header timeout", d)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestStalledUploadBodyCutButSteadyOneNot(t *testing.T) {
	addr, _, _ := startServe(t, nil)
	base := "http://" + addr
	// A steady upload taking longer than every timeout completes.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 15; i++ {
			_, _ = pw.Write([]byte(strings.Repeat("x", 1000)))
			time.Sleep(200 * time.Millisecond) // 3s in all, under 500ms between writes
		}
		pw.Close()
	}()
	resp, err := http.Post(base+"/v2/slow/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	req, _ := http.NewRequest("PATCH", loc, pr)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-14999" {
		t.Fatalf("steady 3s upload: %s, Range %q", resp.Status, resp.Header.Get("Range"))
	}

	// One that stops sending is cut after the idle timeout.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u := loc[len(base):]
	_, _ = io.WriteString(c, "PATCH "+u+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome bytes")
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stalled upload held the connection %s (got %q)", d, b)
	}
}

func TestRequestIDsAndDrain(t *testing.T) {
	addr, maddr, stop := startServe(t, nil)
	base := "http://" + addr
	req, _ := http.NewRequest("GET", base+"/v2/", nil)
	req.Header.Set("X-Request-Id", "from-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); id == "" || id == "from-client" {
		t.Errorf("X-Request-Id %q: want a generated id (127.0.0.1 is not a trusted proxy)", id)
	}
	for _, p := range []string{"/metrics", "/debug/pprof/", "/readyz", "/livez"} {
		resp, err := http.Get("http://" + maddr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("metrics listener %s: %s", p, resp.Status)
		}
	}
	for _, p := range []string{"/metrics", "/debug/pprof/"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("main listener %s: %s, want 404 (metrics.addr is set)", p, resp.Status)
		}
	}
	// Shutdown: /readyz fails at once while the listener still serves
	// for drain_delay.
	go stop()
	var drained bool
	for i := 0; i < 40 && !drained; i++ {
		time.Sleep(10 * time.Millisecond)
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		drained = resp.StatusCode == 503
	}
	if !drained {
		t.Error("/readyz never answered 503 during the drain delay")
	}
}

// TestRequestIDKeptFromTrustedProxy: an X-Request-Id from a peer in
// http.trusted_proxies is the request's id (the proxy's logs and ours
// then share it); a malformed one is replaced.
func TestRequestIDKeptFromTrustedProxy(t *testing.T) {
	addr, _, _ := startServe(t, func(c *config.Config) { c.HTTP.TrustedProxies = "127.0.0.0/8" })
	for sent, keep := range map[string]bool{"lb-4f2a.7": true, "bad id\"x": false} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v2/", nil)
		req.Header.Set("X-Request-Id", sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if id := resp.Header.Get("X-Request-Id"); (id == sent) != keep || id == "" {
			t.Errorf("X-Request-Id %q from a trusted proxy: answered %q (kept: want %v)", sent, id, keep)
		}
	}
}

// readyz polls /readyz (bounded) until it answers want.
func readyz(t *testing.T, base string, want int, what string) {
	t.Helper()
	if last, ok := wharftest.WaitStatus(base+"/readyz", want, 10*time.Second); !ok {
		t.Fatalf("%s: /readyz answered %d for 10s, want %d", what, last, want)
	}
}

// childrenOf lists the processes whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// freeze stops (SIGSTOP) or resumes (SIGCONT) a server's whole process
// group: it stops answering, its connections stay open, as with a
// network partition or a hung host.
func freeze(t *testing.T, pgid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-pgid, sig); err != nil {
		t.Fatal(err)
	}
}

// TestReadyzScaleOutStores runs serve on a real PostgreSQL and a real
// MinIO and makes each unreachable in turn.
func TestReadyzScaleOutStores(t *testing.T) {
	pg, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrNoBinaries) && !pgtest.Required() {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	if pg.Dir == "" {
		t.Skip("WHARFDEV_TEST_POSTGRES_DSN names an external server: it cannot be stopped here")
	}
	_, dsn, err := pg.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	minio := miniotest.Start(t)
	addr, _, _ := startServe(t, func(c *config.Config) {
		c.Metrics.Addr, c.Metrics.Pprof = "", false
		c.Metadata.Driver = "postgres"
		c.Metadata.Postgres.DSN = dsn
		c.Storage.Driver = "s3"
		c.Storage.S3 = config.S3{Endpoint: minio.Endpoint, Region: miniotest.Region, Bucket: minio.Bucket,
			AccessKey: minio.AccessKey, SecretKey: minio.SecretKey, PathStyle: true, PartSize: 5 << 20}
	})
	base := "http://" + addr
	readyz(t, base, 200, "both up")

	b, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pgPID, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	// The postmaster and its backends (each in a session of its own).
	pids := append([]int{pgPID}, childrenOf(pgPID)...)
	signalAll := func(sig syscall.Signal) {
		for _, p := range pids {
			_ = syscall.Kill(p, sig)
		}
	}
	signalAll(syscall.SIGSTOP)
	thawed := false
	defer func() {
		if !thawed {
			signalAll(syscall.SIGCONT)
		}
	}()
	readyz(t, base, 503, "PostgreSQL stopped")
	signalAll(syscall.SIGCONT)
	thawed = true
	readyz(t, base, 200, "PostgreSQL back")

	freeze(t, minio.PID(), syscall.SIGSTOP)
	mthawed := false
	defer func() {
		if !mthawed {
			freeze(t, minio.PID(), syscall.SIGCONT)
		}
	}()
	readyz(t, base, 503, "MinIO stopped")
	freeze(t, minio.PID(), syscall.SIGCONT)
	mthawed = true
	readyz(t, base, 200, "MinIO back")
}

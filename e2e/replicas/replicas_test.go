// Package replicas tests the scale-out shape for real: two `wharf serve`
// processes (the built binary) over one PostgreSQL and one blob store,
// behind HAProxy on loopback, round robin. It runs twice: over a shared
// blob directory, and over MinIO with S3 pre-signed redirects (the shape
// docs/scale-out.md deploys). scripts/replicas.sh runs it with
// the OCI conformance suite through the load balancer.
package replicas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/freeport"
	"github.com/wharf-registry/wharf/internal/miniotest"
	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/internal/proc"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type replica struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	args []string // what (re)starts it
	env  []string
}

type cluster struct {
	a, b    *replica
	lb      string // http://127.0.0.1:port
	storage string
	shared  string // the replicas' shared directory (blobs under blobs/ on the filesystem)
	pg      *pgtest.Cluster
	minio   *miniotest.Server // s3 only
}

// options vary the cluster start builds.
type options struct {
	pg *pgtest.Cluster // nil: the shared cluster
	// blobs is the filesystem store's root (default: in the shared dir).
	blobs string
	// check is the load balancer's health check path (default /v2/).
	check string
	// env is added to the replicas' environment.
	env []string
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func waitUp(t *testing.T, base string, done chan struct{}, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if done != nil {
			select {
			case <-done:
				t.Fatalf("%s exited at start", what)
			default:
			}
		}
		resp, err := http.Get(base + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", what)
}

func startReplica(t *testing.T, bin, name, dsn, shared string, storageEnv []string) *replica {
	t.Helper()
	r := &replica{name: name, addr: fmt.Sprintf("127.0.0.1:%d", freeport.MustPort(t)), log: filepath.Join(t.TempDir(), name+".log")}
	r.args = []string{bin, "serve", "--addr", r.addr, "--data-dir", filepath.Join(shared, "unused-"+name)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WHARF_") { // the test's own settings are not the server's
			r.env = append(r.env, kv)
		}
	}
	r.env = append(append(r.env,
		"WHARF_METADATA_DRIVER=postgres", "WHARF_METADATA_POSTGRES_DSN="+dsn,
		"WHARF_SIGNING_KEYS_FILE="+filepath.Join(shared, "signing-keys.json"),
		"WHARF_LOG_FORMAT=json", "WHARF_LOG_LEVEL=warn"), storageEnv...)
	r.run(t)
	t.Cleanup(func() {
		proc.Stop(r.cmd.Process, r.done, 10*time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("replica %s log:\n%s", name, tail(b))
		}
	})
	waitUp(t, "http://"+r.addr, r.done, "replica "+name)
	return r
}

// run starts the replica's process (again, after a kill, on its address).
func (r *replica) run(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(r.args[0], r.args[1:]...)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	r.cmd, r.done = cmd, done
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// storageEnv is the replicas' blob store: a directory both share, or a
// MinIO bucket with pre-signed redirects.
func storageEnv(t *testing.T, c *cluster, shared, blobs string) []string {
	t.Helper()
	switch c.storage {
	case "filesystem":
		if blobs == "" {
			blobs = filepath.Join(shared, "blobs")
		}
		return []string{"WHARF_STORAGE_FILESYSTEM_ROOT=" + blobs}
	case "s3":
		m := miniotest.Start(t)
		c.minio = m
		return []string{"WHARF_STORAGE_DRIVER=s3", "WHARF_STORAGE_S3_ENDPOINT=" + m.Endpoint,
			"WHARF_STORAGE_S3_REGION=" + miniotest.Region, "WHARF_STORAGE_S3_BUCKET=" + m.Bucket,
			"WHARF_STORAGE_S3_PREFIX=wharf/", "WHARF_STORAGE_S3_PATH_STYLE=true",
			"WHARF_STORAGE_S3_ACCESS_KEY=" + m.AccessKey, "WHARF_STORAGE_S3_SECRET_KEY=" + m.SecretKey,
			"WHARF_SIGNING_SIGNER=s3", "WHARF_REDIRECT_ENABLED=true"}
	}
	t.Fatalf("storage %q", c.storage)
	return nil
}

func start(t *testing.T, storage string) *cluster { return startWith(t, storage, options{}) }

func startWith(t *testing.T, storage string, o options) *cluster {
	t.Helper()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if pgtest.Required() {
			t.Fatal("haproxy not installed (Debian package haproxy; scripts/test.sh setup installs it)")
		}
		t.Skip("haproxy not installed")
	}
	pg := o.pg
	if pg == nil {
		pg = pgtest.Shared(t)
	}
	if o.check == "" {
		o.check = "/v2/"
	}
	ctx := context.Background()
	name, dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.DropDatabase(context.Background(), name) })
	dir := t.TempDir()
	bin := filepath.Join(dir, "wharf")
	build := exec.Command("go", "build", "-o", bin, "./cmd/wharf")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	shared := filepath.Join(dir, "shared")
	c := &cluster{storage: storage, pg: pg, shared: shared}
	env := append(storageEnv(t, c, shared, o.blobs), o.env...)
	// Both start at once: migrations run once (advisory lock), both
	// agree on one signing key (atomic creation).
	c.a = startReplica(t, bin, "a", dsn, shared, env)
	c.b = startReplica(t, bin, "b", dsn, shared, env)
	lbPort := freeport.MustPort(t)
	// When no replica can answer, HAProxy does, with an OCI error body
	// like a replica's (docs/scale-out.md).
	var errorfiles strings.Builder
	for code, reason := range map[int]string{502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"} {
		f := filepath.Join(dir, fmt.Sprintf("%d.http", code))
		body := `{"errors":[{"code":"UNAVAILABLE","message":"` + lbMessage + `; try again later"}]}` + "\n"
		resp := fmt.Sprintf("HTTP/1.0 %d %s\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: application/json\r\nRetry-After: 5\r\nContent-Length: %d\r\n\r\n%s", code, reason, len(body), body)
		if err := os.WriteFile(f, []byte(resp), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&errorfiles, "    errorfile %d %s\n", code, f)
	}
	cfg := fmt.Sprintf(`global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch
    retry-on conn-failure empty-response
%sfrontend registry
    bind 127.0.0.1:%d
    default_backend wharf
backend wharf
    balance roundrobin
    option httpchk GET %s
    http-check expect status 200
    server a %s check inter 200ms fall 1 rise 2
    server b %s check inter 200ms fall 1 rise 2
`, errorfiles.String(), lbPort, o.check, c.a.addr, c.b.addr)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lbLog := filepath.Join(dir, "haproxy.log")
	logf, _ := os.Create(lbLog)
	lb := exec.Command(haproxy, "-db", "-f", cfgPath)
	lb.Stdout, lb.Stderr = logf, logf
	if err := lb.Start(); err != nil {
		t.Fatal(err)
	}
	lbDone := make(chan struct{})
	go func() { _ = lb.Wait(); logf.Close(); close(lbDone) }()
	t.Cleanup(func() {
		proc.Stop(lb.Process, lbDone, 5*time.Second)
	})
	c.lb = fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	waitUp(t, c.lb, lbDone, "haproxy")
	return c
}

// on rewrites an absolute URL (an upload Location) to go to base.
func on(base, loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	b, _ := url.Parse(base)
	u.Scheme, u.Host = b.Scheme, b.Host
	return u.String()
}

// newRequest builds a request with body (nil: none) and headers.
func newRequest(method, u string, body []byte, hdr map[string]string) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

func do(t *testing.T, method, u string, body []byte, hdr map[string]string) *http.Response {
	t.Helper()
	req := newRequest(method, u, body, hdr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp
}

func expect(t *testing.T, resp *http.Response, code int) []byte {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: %d %s, want %d", resp.Request.Method, resp.Request.URL, resp.StatusCode, b, code)
	}
	return b
}

func pushBlob(t *testing.T, base, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	expect(t, do(t, "POST", base+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b, nil), 201)
	return d
}

func manifest(cfg []byte, cfgD digest.Digest, layer []byte, layerD digest.Digest) []byte {
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, cfgD, len(cfg), layerD, len(layer))
}

// pushImage pushes a one-layer image through base and tags it.
func pushImage(t *testing.T, base, repo, tag, seed string) digest.Digest {
	t.Helper()
	cfg, layer := []byte(`{"seed":"`+seed+`"}`), []byte("layer of "+seed)
	m := manifest(cfg, pushBlob(t, base, repo, cfg), layer, pushBlob(t, base, repo, layer))
	expect(t, do(t, "PUT", base+"/v2/"+repo+"/manifests/"+tag, m, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}), 201)
	return digest.FromBytes(m)
}

func manifestDigest(t *testing.T, base, repo, ref string) digest.Digest {
	t.Helper()
	resp := do(t, "GET", base+"/v2/"+repo+"/manifests/"+ref, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	b := expect(t, resp, 200)
	return digest.FromBytes(b)
}

// pullVerified pulls a tag's manifest and blobs through base, checking digests.
func pullVerified(t *testing.T, base, repo, tag string) {
	t.Helper()
	b := expect(t, do(t, "GET", base+"/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}), 200)
	for _, part := range strings.Split(string(b), `"digest":"`)[1:] {
		d := digest.Digest(part[:strings.IndexByte(part, '"')])
		blob := expect(t, do(t, "GET", base+"/v2/"+repo+"/blobs/"+d.String(), nil, nil), 200)
		if digest.FromBytes(blob) != d {
			t.Fatalf("blob %s of %s:%s read back wrong", d, repo, tag)
		}
	}
}

func TestReplicas(t *testing.T) {
	for _, storage := range []string{"filesystem", "s3"} {
		t.Run(storage, func(t *testing.T) { testReplicas(t, start(t, storage)) })
	}
}

func testReplicas(t *testing.T, c *cluster) {
	A, B := "http://"+c.a.addr, "http://"+c.b.addr

	t.Run("TagMoveSeenByOtherReplicaWithin1s", func(t *testing.T) {
		first := pushImage(t, A, "move/app", "latest", "one")
		if got := manifestDigest(t, B, "move/app", "latest"); got != first { // B caches it
			t.Fatalf("B serves %s, want %s", got, first)
		}
		second := pushImage(t, A, "move/app", "latest", "two")
		moved := time.Now()
		for {
			if manifestDigest(t, B, "move/app", "latest") == second {
				t.Logf("replica B served the moved tag %v after the PUT through A returned", time.Since(moved))
				break
			}
			if time.Since(moved) > time.Second {
				t.Fatal("replica B still serves the old manifest 1s after the tag moved through A")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// And an untag through B is seen by A.
		expect(t, do(t, "DELETE", B+"/v2/move/app/manifests/latest", nil, nil), 202)
		deadline := time.Now().Add(time.Second)
		for {
			resp := do(t, "GET", A+"/v2/move/app/manifests/latest", nil, nil)
			resp.Body.Close()
			if resp.StatusCode == 404 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("replica A serves a deleted tag 1s later")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("RacingWritesNeverCorruptABlob", func(t *testing.T) { testRacingWrites(t, c) })
	if c.storage == "filesystem" {
		t.Run("SignedURLRevokedOnEveryReplica", func(t *testing.T) { testRevokeAcrossReplicas(t, c) })
	}

	t.Run("ChunkedUploadAlternatingReplicas", func(t *testing.T) {
		// 10 MiB in 256 KiB chunks: on S3 the session crosses a part
		// boundary (8 MiB) with its tail segments written by both replicas.
		data := make([]byte, 10<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>12)
		}
		resp := do(t, "POST", c.lb+"/v2/chunks/app/blobs/uploads/", nil, nil)
		expect(t, resp, 202)
		loc := resp.Header.Get("Location")
		const chunk = 256 * 1024
		for i, off := 0, 0; off < len(data); i, off = i+1, off+chunk {
			base := []string{A, B}[i%2]
			end := min(off+chunk, len(data))
			r := do(t, "PATCH", on(base, loc), data[off:end], map[string]string{
				"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", off, end-1)})
			expect(t, r, 202)
			loc = r.Header.Get("Location")
		}
		d := digest.FromBytes(data)
		u, _ := url.Parse(on(B, loc))
		q := u.Query()
		q.Set("digest", d.String())
		u.RawQuery = q.Encode()
		expect(t, do(t, "PUT", u.String(), nil, nil), 201)
		for _, base := range []string{A, B, c.lb} {
			if got := expect(t, do(t, "GET", base+"/v2/chunks/app/blobs/"+d.String(), nil, nil), 200); !bytes.Equal(got, data) {
				t.Fatalf("blob through %s differs", base)
			}
		}
		if c.storage == "s3" { // the bytes above came from MinIO, not a replica
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get(c.lb + "/v2/chunks/app/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "X-Amz-Signature=") {
				t.Fatalf("blob GET on S3: %d Location %q, want 307 to a pre-signed URL", resp.StatusCode, loc)
			}
		}
	})

	if os.Getenv("REPLICAS_CONFORMANCE") == "1" {
		t.Run("ConformanceThroughLoadBalancer", func(t *testing.T) {
			cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "conformance.sh"), "--url", c.lb)
			cmd.Env = append(os.Environ(), "WHARFDEV_ARTIFACTS="+filepath.Join(os.TempDir(), "wharf-artifacts", "replicas-"+c.storage))
			out, err := cmd.CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			for _, l := range lines {
				if strings.HasPrefix(l, "conformance: ") {
					t.Log(l)
					if !strings.HasSuffix(l, " 0 failed, 0 skipped") {
						t.Errorf("conformance through the load balancer: %s", l)
					}
				}
			}
			if err != nil {
				t.Fatalf("conformance.sh --url %s: %v\n%s", c.lb, err, tail(out))
			}
		})
	}

	t.Run("KillReplicaMidPush", func(t *testing.T) {
		var tags []string
		for i := 0; i < 4; i++ {
			tag := "v" + strconv.Itoa(i)
			pushImage(t, c.lb, "kill/app", tag, "kill"+tag)
			tags = append(tags, tag)
		}
		data := bytes.Repeat([]byte("wharf replica "), 300*1024) // ~4 MiB
		d := digest.FromBytes(data)
		resp := do(t, "POST", c.lb+"/v2/kill/app/blobs/uploads/", nil, nil)
		expect(t, resp, 202)
		loc := resp.Header.Get("Location")
		half := len(data) / 2
		r := do(t, "PATCH", on(A, loc), data[:half], map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("0-%d", half-1)})
		expect(t, r, 202)
		loc = r.Header.Get("Location")
		// The second chunk streams to A, which is killed halfway through.
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("PATCH", on(A, loc), pr)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", half, len(data)-1))
		req.ContentLength = int64(len(data) - half)
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("PATCH to a killed replica answered %d", resp.StatusCode)
			}
			errc <- err
		}()
		_, _ = pw.Write(data[half : half+len(data)/4])
		time.Sleep(200 * time.Millisecond)
		if err := c.a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.a.done
		_ = pw.CloseWithError(errors.New("replica gone"))
		if err := <-errc; err == nil {
			t.Fatal("the interrupted PATCH succeeded")
		}
		// The client retries through the load balancer: ask where the
		// upload is, then send the rest.
		st := do(t, "GET", on(c.lb, loc), nil, nil)
		expect(t, st, 204)
		rng := st.Header.Get("Range") // "0-<last>"
		last, err := strconv.Atoi(strings.TrimPrefix(rng, "0-"))
		if err != nil || last+1 != half {
			t.Fatalf("upload status Range %q after the kill, want 0-%d (the acknowledged chunk)", rng, half-1)
		}
		loc = st.Header.Get("Location")
		r = do(t, "PATCH", on(c.lb, loc), data[half:], map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", half, len(data)-1)})
		expect(t, r, 202)
		u, _ := url.Parse(on(c.lb, r.Header.Get("Location")))
		q := u.Query()
		q.Set("digest", d.String())
		u.RawQuery = q.Encode()
		expect(t, do(t, "PUT", u.String(), nil, nil), 201)
		got := expect(t, do(t, "GET", c.lb+"/v2/kill/app/blobs/"+d.String(), nil, nil), 200)
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatal("blob finished on the surviving replica differs")
		}
		// Nothing committed before the kill is lost.
		for _, tag := range tags {
			pullVerified(t, c.lb, "kill/app", tag)
		}
	})
}

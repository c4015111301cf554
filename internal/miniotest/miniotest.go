// Package miniotest starts a real S3 server for tests: on a free
// loopback port, over a temporary directory, with random credentials and a
// fresh bucket, stopped when the test ends. No S3 mocks: the S3 blob store
// is tested against the real thing, of two independent implementations:
// MinIO (Start) and SeaweedFS's S3 gateway (StartKind(t, SeaweedFS)).
//
// A binary is found through $WHARFDEV_MINIO_BIN (or $WHARFDEV_SEAWEEDFS_BIN),
// then ${WHARFDEV_CACHE:-~/.cache/wharf-ci}/bin/minio-<Version> (or
// weed-<SeaweedFSVersion>; what scripts/test.sh installs), then minio (or
// weed) on PATH. Without one the test is skipped, unless
// WHARFDEV_REQUIRE_SERVERS=1 (CI), where it fails.
package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	blobs3 "github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/internal/freeport"
	"github.com/wharf-registry/wharf/internal/proc"
)

// Version is the MinIO module version scripts/lib.sh installs (keep the
// two in sync): `go install github.com/minio/minio@<Version>`.
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Region is the region the server reports.
const Region = "us-east-1"

// Kind is an S3 server implementation.
type Kind string

const (
	MinIO     Kind = "minio"
	SeaweedFS Kind = "seaweedfs"
)

// Kinds are the implementations the S3 store is tested against.
var Kinds = []Kind{MinIO, SeaweedFS}

// Server is a running S3 server.
type Server struct {
	Kind Kind
	// Endpoint is "http://127.0.0.1:PORT".
	Endpoint  string
	AccessKey string
	SecretKey string
	// Bucket was created empty for this server.
	Bucket string
	Dir    string
	// KMSKeyName is the name of the built-in KMS key (Options.KMS), the
	// key id SSE-KMS requests name; empty without a KMS.
	KMSKeyName string

	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
	// ports, build and health start the server again (Up) on the same
	// ports, data and credentials.
	ports  []int
	build  func(ports []int) *exec.Cmd
	health string
}

// Binary finds the minio binary (see the package comment).
func Binary() (string, error) { return BinaryOf(MinIO) }

// BinaryOf finds the binary of kind (see the package comment).
func BinaryOf(kind Kind) (string, error) {
	env, cached, name := "WHARFDEV_MINIO_BIN", "minio-"+Version, "minio"
	if kind == SeaweedFS {
		env, cached, name = "WHARFDEV_SEAWEEDFS_BIN", "weed-"+SeaweedFSVersion, "weed"
	}
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, p, err)
		}
		return p, nil
	}
	cache := os.Getenv("WHARFDEV_CACHE")
	if cache == "" {
		if d, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(d, "wharf-ci")
		}
	}
	if cache != "" {
		p := filepath.Join(cache, "bin", cached)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no %s binary: set %s, or run scripts/test.sh once to install it into the cache", name, env)
}

// Options select optional server features; the zero value is what Start
// and Run give.
type Options struct {
	// KMS starts the server with MinIO's built-in static KMS
	// (MINIO_KMS_SECRET_KEY, one random key named Server.KMSKeyName), so
	// server-side encryption (SSE-S3 and SSE-KMS) can be tested for real.
	KMS bool
}

// Start starts a server that stops when t ends. It skips t when MinIO is
// not installed, unless WHARFDEV_REQUIRE_SERVERS=1.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	return start(t, MinIO, func(bin, dir string) (*Server, error) { return RunWith(context.Background(), bin, dir, o) })
}

// StartKind starts a server of kind that stops when t ends, skipping t
// like Start.
func StartKind(t testing.TB, kind Kind) *Server {
	t.Helper()
	if kind == MinIO {
		return Start(t)
	}
	return start(t, kind, func(bin, dir string) (*Server, error) { return RunSeaweedFS(context.Background(), bin, dir) })
}

// start finds kind's binary (skipping or failing t without one), runs it
// over a new temporary directory and stops and removes both when t ends.
func start(t testing.TB, kind Kind, run func(bin, dir string) (*Server, error)) *Server {
	t.Helper()
	bin, err := BinaryOf(kind)
	if err != nil {
		if os.Getenv("WHARFDEV_REQUIRE_SERVERS") == "1" {
			t.Fatalf("WHARFDEV_REQUIRE_SERVERS=1: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	dir, err := os.MkdirTemp("", "wharf-"+string(kind)+"-")
	if err != nil {
		t.Fatal(err)
	}
	s, err := run(bin, dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("%s: %v", kind, err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() { // the server's side of a failure, before it is gone
			t.Logf("%s log (tail):\n%s", kind, s.tailLog())
		}
		os.RemoveAll(dir)
	})
	return s
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run starts MinIO from bin over dir (outside of tests: the helper
// command and benchmarks). Call Stop when done.
func Run(ctx context.Context, bin, dir string) (*Server, error) {
	return RunWith(ctx, bin, dir, Options{})
}

// RunWith is Run with options.
func RunWith(ctx context.Context, bin, dir string, o Options) (*Server, error) {
	s := newServer(MinIO, dir)
	var extraEnv []string
	if o.KMS {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		s.KMSKeyName = "wharf-test-key"
		extraEnv = append(extraEnv, "MINIO_KMS_SECRET_KEY="+s.KMSKeyName+":"+base64.StdEncoding.EncodeToString(key))
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	return s.launch(ctx, "/minio/health/ready", 2, func(ports []int) *exec.Cmd {
		cmd := exec.Command(bin, "server", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
			"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]), data)
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1", "MINIO_REGION="+Region)
		cmd.Env = append(cmd.Env, extraEnv...)
		return cmd
	})
}

// newServer is a Server of kind over dir with fresh credentials and a
// fresh bucket name, not started.
func newServer(kind Kind, dir string) *Server {
	return &Server{Kind: kind, AccessKey: "wharf" + randomString(6), SecretKey: randomString(20), Bucket: "wharf-" + randomString(4), Dir: dir}
}

// launch starts the command that build makes for nports free loopback
// ports (the first is the S3 port), waits until health answers 200 and
// the bucket is created, and retries on new ports when the server does
// not come up (a port may be taken between choosing and binding).
func (s *Server) launch(ctx context.Context, health string, nports int, build func(ports []int) *exec.Cmd) (*Server, error) {
	var lastErr error
	for range 5 {
		ports := make([]int, nports)
		for i := range ports {
			p, err := freeport.Port()
			if err != nil {
				return nil, err
			}
			ports[i] = p
		}
		s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		s.ports, s.build, s.health = ports, build, health
		if err := s.startProcess(); err != nil {
			return nil, err
		}
		if lastErr = s.waitReady(ctx, health, 60*time.Second); lastErr == nil {
			if err := s.createFirstBucket(ctx, 60*time.Second); err != nil {
				s.Stop()
				return nil, err
			}
			return s, nil
		}
		s.Stop()
	}
	return nil, fmt.Errorf("%s did not start: %w (log: %s)", s.Kind, lastErr, s.tailLog())
}

func (s *Server) logPath() string { return filepath.Join(s.Dir, string(s.Kind)+".log") }

// startProcess starts the server on s.ports over s.Dir, appending to its log.
func (s *Server) startProcess() error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := s.build(s.ports)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	s.cmd, s.log, s.done = cmd, logf, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	return nil
}

// Down stops the server and keeps its data, so a test can watch its
// clients while the object store is gone. Up starts it again.
func (s *Server) Down() { s.Stop() }

// Up starts a server stopped by Down on the same ports, data and
// credentials, and waits until it serves.
func (s *Server) Up(ctx context.Context) error {
	if s.cmd != nil {
		select {
		case <-s.done:
		default:
			return nil // running
		}
	}
	if err := s.startProcess(); err != nil {
		return err
	}
	if err := s.waitReady(ctx, s.health, 60*time.Second); err != nil {
		return fmt.Errorf("%s did not restart: %w (log: %s)", s.Kind, err, s.tailLog())
	}
	return nil
}

// Restart is Down then Up: what clients see of an object-store restart.
func (s *Server) Restart(ctx context.Context) error {
	s.Down()
	return s.Up(ctx)
}

func (s *Server) tailLog() string {
	b, _ := os.ReadFile(s.logPath())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (s *Server) waitReady(ctx context.Context, health string, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited", s.Kind)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := c.Get(s.Endpoint + health)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out waiting for %s", health)
}

// createFirstBucket creates s.Bucket, retrying while the server answers
// 503: /minio/health/ready can say yes before the object layer is
// initialized (XMinioServerNotInitialized), which a loaded CI machine
// stretches past the SDK's own three attempts.
func (s *Server) createFirstBucket(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := s.CreateBucket(ctx, s.Bucket)
		var re *awshttp.ResponseError
		if err == nil || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Client returns an S3 client for the server (path-style addressing).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	_, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// Keys lists the keys of the bucket's objects under prefix, leaving out
// the blob store's directory markers (blobs3.KeepName).
func (s *Server) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); path.Base(k) != blobs3.KeepName {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// PID is the server's process id (benchmarks read its CPU time).
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	proc.Stop(s.cmd.Process, s.done, 10*time.Second)
	if s.log != nil {
		s.log.Close()
	}
}

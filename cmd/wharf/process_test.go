package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real wharf binary as a child process, so that a
// server can be killed with SIGKILL mid-request and restarted on the same
// data directory.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func wharfBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wharf-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "wharf")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd  *exec.Cmd
	url  string
	done chan error
	logs *bytes.Buffer
	mu   *sync.Mutex
}

// startWharf runs `wharf serve` on a free loopback port over dataDir (and
// any further arguments) and waits for its "wharf serving" log line.
func startWharf(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(wharfBinary(t), append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
	cmd.Env = append(os.Environ(), "WHARF_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "wharf serving" {
				addrc <- rec.Addr
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case addr := <-addrc:
		p.url = "http://" + addr
	case err := <-p.done:
		t.Fatalf("wharf exited before serving: %v\n%s", err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("wharf did not start in 30s\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("wharf did not die on SIGKILL")
	}
}

func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func expectStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, want, b)
	}
}

// TestUploadSurvivesKill starts a chunked upload, kills the server with
// SIGKILL in the middle of a chunk, restarts it and finishes the upload
// from the last acknowledged offset.
func TestUploadSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	p := startWharf(t, dir)
	blob := make([]byte, 3<<20)
	_, _ = rand.Read(blob)
	sum := sha256.Sum256(blob)
	dgst := fmt.Sprintf("sha256:%x", sum)
	const chunk = 1 << 20

	resp := do(t, "POST", p.url+"/v2/crash/test/blobs/uploads/", nil, nil)
	expectStatus(t, resp, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	path := loc[strings.Index(loc, "/v2/"):]

	resp = do(t, "PATCH", p.url+path, bytes.NewReader(blob[:chunk]), map[string]string{
		"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("0-%d", chunk-1)})
	expectStatus(t, resp, http.StatusAccepted)

	// Send half of the second chunk, then kill the server mid-request.
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("PATCH", p.url+path, pr)
		req.ContentLength = chunk
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", chunk, 2*chunk-1))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("PATCH completed with %d", resp.StatusCode)
		}
		errc <- err
	}()
	if _, err := pw.Write(blob[chunk : chunk+chunk/2]); err != nil {
		t.Fatal(err)
	}
	p.kill(t)
	pw.Close()
	if err := <-errc; err == nil || strings.Contains(err.Error(), "completed") {
		t.Fatalf("interrupted PATCH: %v", err)
	}

	p = startWharf(t, dir)
	resp = do(t, "GET", p.url+path, nil, nil)
	expectStatus(t, resp, http.StatusNoContent)
	if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", chunk-1); got != want {
		t.Fatalf("after restart Range = %q, want %q", got, want)
	}
	resp = do(t, "PATCH", p.url+path, bytes.NewReader(blob[chunk:]), map[string]string{
		"Content-Range": fmt.Sprintf("%d-%d", chunk, len(blob)-1)})
	expectStatus(t, resp, http.StatusAccepted)
	resp = do(t, "PUT", p.url+path+"&digest="+dgst, nil, nil)
	expectStatus(t, resp, http.StatusCreated)

	resp = do(t, "GET", p.url+"/v2/crash/test/blobs/"+dgst, nil, nil)
	expectStatus(t, resp, http.StatusOK)
	got, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(got, blob) {
		t.Fatalf("blob after restart differs (%d bytes, want %d)", len(got), len(blob))
	}
}

// TestKilledUploadLeavesNothingVisible kills the server in the middle of a
// monolithic upload and checks the blob and repository never appear.
func TestKilledUploadLeavesNothingVisible(t *testing.T) {
	dir := t.TempDir()
	p := startWharf(t, dir)
	blob := make([]byte, 2<<20)
	_, _ = rand.Read(blob)
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))

	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", p.url+"/v2/ghost/blobs/uploads/?digest="+dgst, pr)
		req.ContentLength = int64(len(blob))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	if _, err := pw.Write(blob[:len(blob)/2]); err != nil {
		t.Fatal(err)
	}
	p.kill(t)
	pw.Close()
	<-errc

	p = startWharf(t, dir)
	resp := do(t, "HEAD", p.url+"/v2/ghost/blobs/"+dgst, nil, nil)
	expectStatus(t, resp, http.StatusNotFound)
	resp = do(t, "GET", p.url+"/v2/_catalog", nil, nil)
	expectStatus(t, resp, http.StatusOK)
	var cat struct{ Repositories []string }
	if err := json.NewDecoder(resp.Body).Decode(&cat); err != nil {
		t.Fatal(err)
	}
	if len(cat.Repositories) != 0 {
		t.Fatalf("catalog after a killed upload = %v, want empty", cat.Repositories)
	}
	resp = do(t, "GET", p.url+"/v2/ghost/tags/list", nil, nil)
	expectStatus(t, resp, http.StatusNotFound)
}

// TestGracefulShutdown sends SIGTERM while a request is in flight: the
// request completes and the process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	p := startWharf(t, dir)
	blob := bytes.Repeat([]byte("x"), 1<<20)
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))

	pr, pw := io.Pipe()
	type result struct {
		status int
		err    error
	}
	resc := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", p.url+"/v2/graceful/blobs/uploads/?digest="+dgst, pr)
		req.ContentLength = int64(len(blob))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			resc <- result{err: err}
			return
		}
		resp.Body.Close()
		resc <- result{status: resp.StatusCode}
	}()
	if _, err := pw.Write(blob[:len(blob)/2]); err != nil {
		t.Fatal(err)
	}
	// The kernel accepts bytes before the server accepts the connection;
	// wait until the handler has opened its upload session.
	waitFor(t, "the upload to start", func() bool {
		entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "uploads"))
		return len(entries) > 0
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait until the server has begun shutting down, then finish the body.
	waitFor(t, "the shutdown log line", func() bool { return strings.Contains(p.log(), "shutting down") })
	if _, err := pw.Write(blob[len(blob)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-resc
	if res.err != nil || res.status != http.StatusCreated {
		t.Fatalf("in-flight upload during shutdown: status %d, err %v\n%s", res.status, res.err, p.log())
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("wharf exited with %v\n%s", err, p.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wharf did not exit after SIGTERM")
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHangupReloadsPolicy: SIGHUP applies a changed auth.policy to the
// running server; an invalid file changes nothing and the server keeps
// serving; a changed setting that needs a restart is said to need one.
func TestHangupReloadsPolicy(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wharf.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const closed = "auth:\n  mode: basic\n"
	const open = "auth:\n  mode: basic\n  policy:\n    anonymous_pull: [\"public/**\"]\n"
	write(closed)
	p := startWharf(t, filepath.Join(dir, "data"), "--config", cfgPath)
	status := func() int {
		resp := do(t, "GET", p.url+"/v2/public/app/tags/list", nil, nil)
		resp.Body.Close()
		return resp.StatusCode
	}
	hangup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	logged := func(msg string) func() bool {
		return func() bool { return strings.Contains(p.log(), msg) }
	}
	if got := status(); got != http.StatusUnauthorized {
		t.Fatalf("anonymous pull before the reload: %d, want 401", got)
	}
	write(open)
	hangup()
	waitFor(t, "the policy reload", logged("reload: auth.policy applied"))
	if got := status(); got != http.StatusNotFound { // allowed now: the repository is just empty
		t.Fatalf("anonymous pull after the reload: %d, want 404\n%s", got, p.log())
	}
	write("auth: [not, a, mapping")
	hangup()
	waitFor(t, "the refused reload", logged("reload: configuration refused"))
	if got := status(); got != http.StatusNotFound {
		t.Fatalf("after an invalid file: %d, want the running policy (404)", got)
	}
	write(open + "limits:\n  manifest_max_bytes: 1234567\n")
	hangup()
	waitFor(t, "the restart warning", logged("take effect on restart"))
	write(closed)
	hangup()
	waitFor(t, "the second policy reload", func() bool { return strings.Count(p.log(), "reload: auth.policy applied") >= 3 })
	if got := status(); got != http.StatusUnauthorized {
		t.Fatalf("after closing the policy again: %d, want 401", got)
	}
	select {
	case err := <-p.done:
		t.Fatalf("wharf exited: %v", err)
	default:
	}
}

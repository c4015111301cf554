package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/internal/testhttp"
)

// startUpload opens an upload session and returns its path.
func startUpload(t *testing.T, base, repo string) string {
	t.Helper()
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: %s", resp.Status)
	}
	return strings.TrimPrefix(loc, base)
}

// patchAt sends a PATCH's headers and first bytes on a raw connection
// (from the client address xff, via a trusted proxy) and leaves the body
// open; it returns the connection.
func patchAt(t *testing.T, addr, path, xff string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, _ = io.WriteString(c, "PATCH "+path+" HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: "+xff+"\r\nContent-Length: 100000\r\n\r\nfirst bytes")
	return c
}

// trickle writes n bytes every interval on c until stop; it reports how
// long the server kept reading (until a write failed or the server
// answered).
func trickle(c net.Conn, n int, every, limit time.Duration) (time.Duration, string) {
	start := time.Now()
	answered := make(chan string, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(limit))
		line, _ := bufio.NewReader(c).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	for time.Since(start) < limit {
		select {
		case line := <-answered:
			return time.Since(start), line
		case <-time.After(every):
		}
		if _, err := c.Write([]byte(strings.Repeat("x", n))); err != nil {
			return time.Since(start), "write: " + err.Error()
		}
	}
	return time.Since(start), "still open"
}

// TestUploadBelowMinimumRateCut: a body that keeps trickling (under the
// idle timeout, so that alone never cuts it) is cut once a rate window
// shows it under limits.upload_min_rate; one above the rate completes.
func TestUploadBelowMinimumRateCut(t *testing.T) {
	addr, _, _ := startServe(t, func(c *config.Config) {
		c.Limits.UploadMinRate, c.Limits.UploadRateWindow = 2000, time.Second
	})
	base := "http://" + addr
	c := patchAt(t, addr, startUpload(t, base, "trickle/app"), "127.0.0.1")
	took, what := trickle(c, 10, 200*time.Millisecond, 6*time.Second) // 50 B/s
	if took > 4*time.Second || what != "HTTP/1.1 408 Request Timeout" {
		t.Fatalf("50 B/s upload under a 2000 B/s minimum: %s after %s, want 408 within 4s", what, took)
	}
	t.Logf("50 B/s upload cut after %s: %s", took.Round(time.Millisecond), what)

	// 5000 B/s for 3 s, three windows: completes.
	pr, pw := io.Pipe()
	go func() {
		for range 15 {
			_, _ = pw.Write([]byte(strings.Repeat("x", 1000)))
			time.Sleep(200 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PATCH", base+startUpload(t, base, "steady/app"), pr)
	resp, _ := testhttp.Do(t, nil, req)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("5000 B/s upload: %s", resp.Status)
	}
}

// TestUploadMaxDuration: a body that moves steadily is still cut when it
// takes longer in all than limits.upload_max_duration.
func TestUploadMaxDuration(t *testing.T) {
	addr, _, _ := startServe(t, func(c *config.Config) {
		c.Limits.UploadMaxDuration = time.Second
		c.Limits.UploadMinRate = 0
	})
	c := patchAt(t, addr, startUpload(t, "http://"+addr, "long/app"), "127.0.0.1")
	took, what := trickle(c, 1000, 100*time.Millisecond, 6*time.Second)
	if took > 3*time.Second || what != "HTTP/1.1 408 Request Timeout" {
		t.Fatalf("10 KB/s upload with a 1 s limit: %s after %s, want 408 within 3s", what, took)
	}
}

// TestUploadsPerClientCap: one client cannot take every upload slot:
// past limits.concurrent_uploads_per_client its uploads get 429, while
// another client's upload still starts.
func TestUploadsPerClientCap(t *testing.T) {
	addr, _, _ := startServe(t, func(c *config.Config) {
		c.Limits.ConcurrentUploadsPerClient = 2
		c.HTTP.TransferIdleTimeout = 20 * time.Second
		c.HTTP.TrustedProxies = "127.0.0.0/8"
	})
	base := "http://" + addr
	for range 2 {
		patchAt(t, addr, startUpload(t, base, "greedy/app"), "10.1.1.1")
	}
	time.Sleep(200 * time.Millisecond) // both are in the handler
	third := patchAt(t, addr, startUpload(t, base, "greedy/app"), "10.1.1.1")
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(third).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 429") {
		t.Fatalf("third concurrent upload of one client: %q, want 429", line)
	}
	// Another client is not affected.
	req, _ := http.NewRequest("PATCH", base+startUpload(t, base, "other/app"), strings.NewReader("bytes"))
	req.Header.Set("X-Forwarded-For", "10.2.2.2")
	resp, _ := testhttp.Do(t, nil, req)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("another client's upload while the first holds its cap: %s", resp.Status)
	}
}

package server_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/server"
)

// uploadBytesIn is wharf_http_request_bytes_total of the upload route.
func uploadBytesIn(t *testing.T, r *wharftest.Registry) int64 {
	t.Helper()
	resp, err := http.Get(r.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, `wharf_http_request_bytes_total{route="/v2/{name}/blobs/uploads/{uuid}"}`) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(v)
		}
	}
	return 0
}

// TestBytesInCountsBytesRead: bytes_in (metric and access log) is what
// was read from the body, not the Content-Length: a chunked PATCH (no
// Content-Length) counts its bytes, a body cut off short of its
// Content-Length counts only the bytes that came.
func TestBytesInCountsBytesRead(t *testing.T) {
	logs := &wharftest.LogBuffer{}
	reg := wharftest.Start(t, wharftest.Options{Server: func(o *server.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}})
	start := func() string {
		resp, err := http.Post(reg.URL+"/v2/count/app/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %s", resp.Status)
		}
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = reg.URL + loc
		}
		return loc
	}

	// Chunked: no Content-Length at all.
	const chunked = 12345
	req, _ := http.NewRequest(http.MethodPatch, start(), io.MultiReader(strings.NewReader(strings.Repeat("a", 5000)), strings.NewReader(strings.Repeat("b", chunked-5000))))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-"+strconv.Itoa(chunked-1) {
		t.Fatalf("chunked PATCH: %s, Range %q", resp.Status, resp.Header.Get("Range"))
	}
	if got := uploadBytesIn(t, reg); got != chunked {
		t.Errorf("after a chunked PATCH of %d bytes: wharf_http_request_bytes_total %d", chunked, got)
	}
	if !strings.Contains(logs.String(), "method=PATCH") || !strings.Contains(logs.String(), "bytes_in="+strconv.Itoa(chunked)+" ") {
		t.Errorf("access log: want bytes_in=%d on the PATCH line:\n%s", chunked, logs.String())
	}

	// Cut off: Content-Length 100000, 1000 bytes, then the client hangs up.
	u := strings.TrimPrefix(start(), reg.URL)
	c, err := net.Dial("tcp", reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "PATCH "+u+" HTTP/1.1\r\nHost: "+reg.Host+"\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("c", 1000))
	time.Sleep(100 * time.Millisecond) // let the server read what came
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c) // until the server is done with it
	c.Close()
	want := int64(chunked + 1000)
	var got int64
	for i := 0; i < 50; i++ { // the observer runs after the handler returns
		if got = uploadBytesIn(t, reg); got != chunked {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != want {
		t.Errorf("after a PATCH cut off at 1000 of 100000 bytes: wharf_http_request_bytes_total %d, want %d", got, want)
	}
}

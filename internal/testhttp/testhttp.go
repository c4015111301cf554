// Package testhttp holds the tests' one way to send a request and read a
// body: whole, closed, and failing the test on a transport error, so a
// test states what it checks and not how to drain a response.
package testhttp

import (
	"io"
	"net/http"
	"testing"
)

// ReadAll reads rc to the end and closes it.
func ReadAll(t testing.TB, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return b
}

// Do sends req with c (nil: http.DefaultClient) and returns the response
// with its whole body read.
func Do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Redacted(), err)
	}
	return resp, ReadAll(t, resp.Body)
}

// Get is Do of a GET of rawURL.
func Get(t testing.TB, c *http.Client, rawURL string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Do(t, c, req)
}

// NoRedirects is a client that returns redirects instead of following
// them (the tests of signed URLs look at the 307 itself).
var NoRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

package server

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzParseV2Path(f *testing.F) {
	for _, p := range []string{
		"/v2", "/v2/", "/v2/_catalog",
		"/v2/a/tags/list",
		"/v2/library/ubuntu/manifests/latest",
		"/v2/a/b/c/manifests/" + testDigest,
		"/v2/a/manifests/latest/blobs",
		"/v2/a/blobs/" + testDigest,
		"/v2/a/blobs/uploads/",
		"/v2/a/blobs/uploads",
		"/v2/a/blobs/uploads/5e4b1c2a-uuid",
		"/v2/a/referrers/" + testDigest,
		"/v2/x/manifests/y/blobs/uploads/",
		"/v2/a/blobs/b/tags/list",
		// Found by fuzzing: "//" made the mux redirect to another repository.
		"/v2//manifests/x",
		"/v2/a/manifests//blobs",
		"/v2/a/manifests/x/",
		"/v3/", "", "garbage",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		m := ParseV2Path(path)
		switch m.Route {
		case RouteNone:
			if m.Name != "" || m.Param != "" {
				t.Fatalf("ParseV2Path(%q): no route but name %q param %q", path, m.Name, m.Param)
			}
			return
		case RouteBase:
			if path != "/v2" && path != "/v2/" {
				t.Fatalf("ParseV2Path(%q) = base", path)
			}
		case RouteCatalog:
			if path != "/v2/_catalog" {
				t.Fatalf("ParseV2Path(%q) = catalog", path)
			}
		}
		if m.Route == RouteBase || m.Route == RouteCatalog {
			if m.Name != "" || m.Param != "" {
				t.Fatalf("ParseV2Path(%q): %s with name %q param %q", path, m.Route, m.Name, m.Param)
			}
			return
		}
		if m.Name == "" {
			t.Fatalf("ParseV2Path(%q) = %s without a name", path, m.Route)
		}
		hasParam := m.Route != RouteTags && m.Route != RouteUploadStart
		if hasParam != (m.Param != "") {
			t.Fatalf("ParseV2Path(%q) = %s with param %q", path, m.Route, m.Param)
		}
		if strings.Contains(m.Param, "/") {
			t.Fatalf("ParseV2Path(%q): param %q contains a slash", path, m.Param)
		}
		if rebuilt := buildV2Path(m, true); rebuilt != path {
			if alt := buildV2Path(m, false); m.Route != RouteUploadStart || alt != path {
				t.Fatalf("ParseV2Path(%q) = {%s %q %q}, which rebuilds as %q", path, m.Route, m.Name, m.Param, rebuilt)
			}
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"0-0", "0-99", "100-199", "bytes 0-99/100", "bytes 0-99/*", "bytes=0-99",
		"5-4", "-1-5", "0-", "-", "", "a-b", " 0-1 ", "+1-+2", "bytes",
		// Found by fuzzing: end+1 overflowed.
		"0-9223372036854775807", "9223372036854775807-9223372036854775807",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, end, ok := parseContentRange(v)
		if !ok {
			if start != 0 || end != 0 {
				t.Fatalf("parseContentRange(%q) = %d, %d, false", v, start, end)
			}
			return
		}
		if start < 0 || end < start {
			t.Fatalf("parseContentRange(%q) = %d-%d", v, start, end)
		}
		// readChunk computes the chunk length as end-start+1: it must be
		// a positive number of bytes, never an overflow.
		if end-start+1 <= 0 {
			t.Fatalf("parseContentRange(%q) = %d-%d, whose length overflows", v, start, end)
		}
	})
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"0-0", 0, 0, true},
		{"0-99", 0, 99, true},
		{"100-199", 100, 199, true},
		{" 5-10 ", 5, 10, true},
		{"bytes 0-99/100", 0, 99, true},
		{"bytes 0-99/*", 0, 99, true},
		{"bytes=0-99", 0, 99, true},
		{"", 0, 0, false},
		{"-", 0, 0, false},
		{"0-", 0, 0, false},
		{"-5", 0, 0, false},
		{"5-4", 0, 0, false},
		{"-1-5", 0, 0, false},
		{"a-b", 0, 0, false},
		{"0x1-0x2", 0, 0, false},
		{"1.5-2", 0, 0, false},
		{"0-1-2", 0, 0, false},
		{"bytes */100", 0, 0, false},
		{"99999999999999999999-99999999999999999999", 0, 0, false},
		{"0-9223372036854775807", 0, 0, false}, // length would overflow int64
		{"1-9223372036854775807", 1, 9223372036854775807, true},
		{"+0-+5", 0, 0, false},
		{"0-+5", 0, 0, false},
	} {
		start, end, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (start != tc.start || end != tc.end)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}

// FuzzRangeSatisfiable: whatever rangeSatisfiable lets through,
// http.ServeContent answers with one non-empty range inside the blob.
func FuzzRangeSatisfiable(f *testing.F) {
	for _, h := range []string{
		// Found by review: ServeContent answers 206 with an empty range.
		"bytes=-0",
		"bytes=5-3", "bytes=10240-", "bytes=0-1,5-6", "bytes=-1", "bytes=0-", "bytes=0-99999",
		"bytes= 1 - 2 ", "bytes=+1-2", "bytes=1--2", "bytes=-", "bytes=", "bytes=00-01", "items=0-1",
	} {
		f.Add(h, int64(10240))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		size &= 1<<20 - 1
		if !rangeSatisfiable(h, size) {
			return
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Range", h)
		http.ServeContent(rec, req, "", zeroTime, bytes.NewReader(make([]byte, size)))
		var a, b, n int64
		if _, err := fmt.Sscanf(rec.Header().Get("Content-Range"), "bytes %d-%d/%d", &a, &b, &n); rec.Code != http.StatusPartialContent ||
			err != nil || a > b || b >= size || n != size || int64(rec.Body.Len()) != b-a+1 {
			t.Fatalf("Range %q of %d bytes: %d, Content-Range %q, %d bytes", h, size, rec.Code, rec.Header().Get("Content-Range"), rec.Body.Len())
		}
	})
}

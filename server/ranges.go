package server

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/wharf-registry/wharf/oci"
)

// checkRange answers 416 RANGE_INVALID, and reports false, for a Range
// header that http.ServeContent would serve but should not: a zero-length
// suffix ("bytes=-0", which it answers 206 with "bytes 10240-10239/10240")
// and several ranges (no registry client asks for them, and a multipart
// answer costs the server per range). A Range that If-Range turns off is
// left to ServeContent, which then sends the whole blob.
func (s *Server) checkRange(w http.ResponseWriter, r *http.Request, body io.Seeker) bool {
	if ir := r.Header.Get("If-Range"); ir != "" && ir != w.Header().Get("ETag") {
		return true
	}
	size, err := body.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = body.Seek(0, io.SeekStart)
	}
	if err != nil || rangeSatisfiable(r.Header.Get("Range"), size) {
		return true // a failed seek is ServeContent's to report
	}
	w.Header().Set("Content-Range", "bytes */"+itoa(size))
	s.writeError(w, r, rangeError(r))
	return false
}

func rangeError(r *http.Request) error {
	return oci.Errorf(oci.CodeRangeInvalid, "requested range %q is not satisfiable", truncate(r.Header.Get("Range")))
}

// rangeSatisfiable reports whether h is one byte range that overlaps a
// representation of size bytes (RFC 9110, section 14.1.1): "bytes=a-b"
// with a <= b and a < size, "bytes=a-" with a < size, or "bytes=-n" with
// n > 0 and size > 0.
func rangeSatisfiable(h string, size int64) bool {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return false
	}
	// Trimmed as net/http trims (spaces and tabs only).
	a, b, ok := strings.Cut(strings.Trim(spec, " \t"), "-")
	if !ok {
		return false
	}
	a, b = strings.Trim(a, " \t"), strings.Trim(b, " \t")
	if a == "" {
		n, ok := rangeNumber(b)
		return ok && n > 0 && size > 0
	}
	start, ok := rangeNumber(a)
	if !ok || start >= size {
		return false
	}
	if b == "" {
		return true
	}
	end, ok := rangeNumber(b)
	return ok && end >= start
}

// rangeNumber parses the digits of a range bound (no sign, no spaces).
func rangeNumber(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

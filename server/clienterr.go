package server

import (
	"errors"
	"net"
	"net/http"
	"os"

	"github.com/wharf-registry/wharf/oci"
)

// clientBodyError classifies an error that is not an *oci.Error but comes
// from reading the request body: the client's fault (a body over the
// limit, cut short, stalled), answered 413, 400 or 408 and logged at info,
// not an internal error. It returns nil for every other error. The body's
// own read error is what counts, not err's chain: stores may wrap it with
// %v.
func (s *Server) clientBodyError(r *http.Request, err error) *oci.Error {
	var e *oci.Error
	if errors.As(err, &e) {
		return nil
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return oci.Errorf(oci.CodeSizeInvalid, "request body over %d bytes", tooBig.Limit).WithStatus(http.StatusRequestEntityTooLarge)
	}
	info, _ := r.Context().Value(infoKey{}).(*requestInfo)
	if info == nil || info.body == nil {
		return nil
	}
	p := info.body.err.Load()
	if p == nil || errors.Is(*p, http.ErrBodyReadAfterClose) {
		return nil // a read after close is the server's own mistake
	}
	bodyErr := *p
	s.log.InfoContext(r.Context(), "request body failed", "method", r.Method, "path", truncate(r.URL.Path), "err", bodyErr)
	code := oci.CodeBlobUploadInvalid
	if info.route == RouteManifest {
		code = oci.CodeManifestInvalid
	}
	var ne net.Error
	if errors.Is(bodyErr, ErrUploadTooSlow) {
		return oci.Errorf(code, "the request body arrived slower than %d bytes/s", s.minUploadRate).WithStatus(http.StatusRequestTimeout)
	}
	if errors.Is(bodyErr, os.ErrDeadlineExceeded) || errors.As(bodyErr, &ne) && ne.Timeout() {
		return oci.Errorf(code, "the request body stalled; nothing arrived in time").WithStatus(http.StatusRequestTimeout)
	}
	return oci.Errorf(code, "the request body ended before its declared length or could not be read").WithStatus(http.StatusBadRequest)
}

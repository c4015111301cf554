package server

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// DownloadVerifier checks the signature of a URL to the signed-download
// route (the embedded shape's signer).
type DownloadVerifier interface {
	Verify(d digest.Digest, q url.Values, now time.Time) error
}

// DownloadPrefix is where the signed-download route lives.
const DownloadPrefix = "/_wharf/blobs/"

// download serves GET/HEAD /_wharf/blobs/<digest>?expires=&kid=&sig=. The
// signature is the only credential; it is checked, in constant time,
// before storage is touched.
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	if info, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		info.route = RouteDownload
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, r, oci.Errorf(oci.CodeUnsupported, "%s is not supported on signed URLs", r.Method))
		return
	}
	d, err := digest.Parse(strings.TrimPrefix(r.URL.Path, DownloadPrefix))
	if err != nil {
		s.writeError(w, r, oci.Errorf(oci.CodeDenied, "invalid signed URL"))
		return
	}
	if err := s.downloads.Verify(d, r.URL.Query(), s.now()); err != nil {
		s.writeError(w, r, oci.Errorf(oci.CodeDenied, "%v", err))
		return
	}
	info, body, err := s.reg.OpenStoredBlob(r.Context(), d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", info.Digest.String())
	h.Set("ETag", `"`+info.Digest.String()+`"`)
	s.serveContent(w, r, body)
}

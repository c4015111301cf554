package server

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

func (s *Server) base(w http.ResponseWriter, r *http.Request, _ *call) {
	writeJSON(w, r, http.StatusOK, "application/json", struct{}{})
}

// ---- listing ----

func (s *Server) catalog(w http.ResponseWriter, r *http.Request, c *call) {
	n, last, err := pagination(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n < 0 || n > catalogMaxPage {
		n = catalogMaxPage // the rest follows the Link header
	}
	visible, more, err := s.visibleRepositories(r, c.id, last, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if more {
		// Named after a repository the caller may pull, never after one
		// the store returned but the filter dropped: that would leak it.
		setNextLink(w, "/v2/_catalog", visible[len(visible)-1], n)
	}
	writeJSON(w, r, http.StatusOK, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{visible})
}

// catalogMaxPage is the page size of a catalog request without n and the
// largest n honoured: one request reads a bounded part of the store, as
// in CNCF Distribution (catalog.maxentries), and the caller follows Link.
const catalogMaxPage = 1000

// catalogScanLimit bounds the repositories one catalog request reads from
// the store beyond the page itself, so that a caller who may pull few of
// many repositories cannot make one request walk the whole store.
const catalogScanLimit = 10000

// visibleRepositories returns up to n (n < 0: all) repositories after
// last that the catalog may name to id (auth.Authorizer.Lists), reading
// the store page by page so that hidden ones do not leave the page short. more reports that visible ones may
// follow: the page is full and at least one more visible repository was
// seen, or the scan stopped at catalogScanLimit with a non-empty page.
func (s *Server) visibleRepositories(r *http.Request, id auth.Identity, last string, n int) (visible []string, more bool, err error) {
	visible = []string{}
	if n == 0 {
		return visible, false, nil
	}
	batch := -1
	if n > 0 {
		batch = min(max(2*n+1, 100), 1000)
	}
	scanned := 0
	for {
		repos, err := s.reg.Repositories(r.Context(), last, batch)
		if err != nil {
			return nil, false, err
		}
		for _, name := range repos {
			if !s.auth.Lists(id, name) {
				continue
			}
			if n > 0 && len(visible) == n {
				return visible, true, nil // a visible one follows the page
			}
			visible = append(visible, name)
		}
		scanned += len(repos)
		if batch < 0 || len(repos) < batch {
			return visible, false, nil // the store is exhausted
		}
		if scanned >= n+catalogScanLimit {
			// Bounded: what was found, and a Link after it if anything
			// was, so the caller can go on from a name it may see.
			return visible, len(visible) > 0, nil
		}
		last = repos[len(repos)-1]
	}
}

func (s *Server) tags(w http.ResponseWriter, r *http.Request, c *call) {
	n, last, err := pagination(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tags, err := s.reg.Tags(r.Context(), c.m.Name, last, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n > 0 && len(tags) == n {
		setNextLink(w, "/v2/"+c.m.Name+"/tags/list", tags[len(tags)-1], n)
	}
	writeJSON(w, r, http.StatusOK, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{c.m.Name, tags})
}

// pagination reads n and last. n absent means no limit (-1).
func pagination(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if v := q.Get("n"); v != "" {
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, "", oci.Errorf(oci.CodeUnsupported, "n must be a non-negative integer").WithStatus(http.StatusBadRequest)
		}
	}
	return n, q.Get("last"), nil
}

func setNextLink(w http.ResponseWriter, path, last string, n int) {
	q := url.Values{"last": {last}, "n": {strconv.Itoa(n)}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

// ---- manifests ----

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, c *call) {
	ref, err := oci.ParseReference(c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec, err := s.reg.Manifest(r.Context(), c.m.Name, ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !oci.AcceptsMediaType(r.Header.Values("Accept"), rec.MediaType) {
		s.writeError(w, r, oci.Errorf(oci.CodeManifestUnknown,
			"manifest %s is %s, which the request's Accept header does not admit", ref, rec.MediaType))
		return
	}
	h := w.Header()
	h.Set("Content-Type", rec.MediaType)
	h.Set("Docker-Content-Digest", rec.Digest.String())
	h.Set("ETag", `"`+rec.Digest.String()+`"`)
	h.Set("Content-Length", itoa(int64(len(rec.Payload))))
	if rec.Subject != "" {
		h.Set("OCI-Subject", rec.Subject.String())
	}
	if rec.Stale {
		// RFC 9111's "response is stale": the pull-through cache could not
		// revalidate the tag with its upstream.
		h.Set("Warning", `110 wharf "Response is stale: upstream unavailable"`)
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, rec.Digest) {
		h.Del("Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Payload)
	}
}

func etagMatches(header string, d digest.Digest) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == "*" || t == `"`+d.String()+`"` {
			return true
		}
	}
	return false
}

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, c *call) {
	ref, err := oci.ParseReference(c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	limit := s.reg.MaxManifestBytes()
	if r.ContentLength > limit {
		s.writeError(w, r, registry.ManifestTooLarge(limit))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.writeError(w, r, registry.ManifestTooLarge(limit))
			return
		}
		if ce := s.clientBodyError(r, err); ce != nil {
			s.writeError(w, r, ce) // 408 for a stalled body
			return
		}
		s.writeError(w, r, oci.Errorf(oci.CodeManifestInvalid, "reading manifest: %v", err))
		return
	}
	// PUT /manifests/<digest>?tag=a&tag=b tags the manifest in the same step.
	tags := r.URL.Query()["tag"]
	if len(tags) > MaxTagParams {
		s.writeError(w, r, oci.Errorf(oci.CodeTagInvalid, "%d tag parameters; at most %d are accepted", len(tags), MaxTagParams))
		return
	}
	for _, tag := range tags {
		if err := oci.ValidateTag(tag); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if len(tags) > 0 && !ref.IsDigest() {
		s.writeError(w, r, oci.Errorf(oci.CodeTagInvalid, "tag parameters are only allowed when pushing by digest"))
		return
	}
	m, err := s.reg.PutManifest(r.Context(), c.m.Name, ref, r.Header.Get("Content-Type"), body, tags...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", s.url(r, "/v2/"+c.m.Name+"/manifests/"+m.Digest.String()))
	h.Set("Docker-Content-Digest", m.Digest.String())
	if m.Subject != nil {
		h.Set("OCI-Subject", m.Subject.Digest.String())
	}
	for _, tag := range tags {
		h.Add("OCI-Tag", tag)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) deleteManifest(w http.ResponseWriter, r *http.Request, c *call) {
	ref, err := oci.ParseReference(c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.reg.DeleteManifest(r.Context(), c.m.Name, ref); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// ---- blobs ----

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, c *call) {
	d, err := oci.ParseDigest(c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	if r.Method == http.MethodHead {
		info, err := s.reg.StatBlob(r.Context(), c.m.Name, d)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", itoa(info.Size))
		h.Set("Docker-Content-Digest", d.String())
		h.Set("Accept-Ranges", "bytes")
		h.Set("ETag", `"`+d.String()+`"`)
		w.WriteHeader(http.StatusOK)
		return
	}
	info, body, err := s.reg.GetBlob(r.Context(), c.m.Name, d, s.redirect)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if body == nil { // stored, and redirects are on
		signed, ok, err := s.reg.SignBlobURL(r.Context(), info, s.redirectExpiry)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if ok {
			h.Set("Location", s.absolute(r, signed.URL))
			h.Set("Docker-Content-Digest", d.String())
			h.Set("Content-Length", "0")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		if _, body, err = s.reg.OpenBlob(r.Context(), c.m.Name, d); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	defer body.Close()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	// ServeContent answers Range with 206 (416 when unsatisfiable) and
	// sends an *os.File with sendfile.
	s.serveContent(w, r, body)
}

// serveContent is http.ServeContent, except that a Range it cannot satisfy
// (or parse) gets an OCI RANGE_INVALID error body instead of plain text.
func (s *Server) serveContent(w http.ResponseWriter, r *http.Request, body io.ReadSeeker) {
	if r.Header.Get("Range") != "" {
		if !s.checkRange(w, r, body) {
			return
		}
		w = &rangeErrorWriter{ResponseWriter: w, s: s, r: r}
	}
	http.ServeContent(w, r, "", zeroTime, body)
}

// rangeErrorWriter replaces the 416 response of http.ServeContent. It
// forwards ReadFrom so that bodies still go out with sendfile.
type rangeErrorWriter struct {
	http.ResponseWriter
	s      *Server
	r      *http.Request
	failed bool
}

func (w *rangeErrorWriter) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable || w.failed {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.failed = true // ServeContent has set Content-Range: bytes */<size>
	w.s.writeError(w.ResponseWriter, w.r, rangeError(w.r))
}

func (w *rangeErrorWriter) Write(b []byte) (int, error) {
	if w.failed {
		return len(b), nil // ServeContent's plain-text message
	}
	return w.ResponseWriter.Write(b)
}

func (w *rangeErrorWriter) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok && !w.failed {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{w}, src)
}

func (w *rangeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request, c *call) {
	d, err := oci.ParseDigest(c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.reg.DeleteBlob(r.Context(), c.m.Name, d); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// ---- uploads ----

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	ctx := r.Context()
	if mount := q.Get("mount"); mount != "" {
		d, err := oci.ParseDigest(mount)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		canRead := func(repo string) bool { return s.auth.Permits(c.id, repo, auth.Pull) }
		ok, err := s.reg.MountBlob(ctx, c.m.Name, d, q.Get("from"), canRead)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if ok {
			s.blobCreated(w, r, c.m.Name, d)
			return
		}
		// Not mountable: the spec says to start an ordinary upload instead.
	}
	if dq, ok := q["digest"]; ok {
		d, err := oci.ParseDigest(first(dq))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if _, err := s.reg.PutBlob(ctx, c.m.Name, d, registry.Chunk{Body: r.Body, Start: -1, Length: r.ContentLength}); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.blobCreated(w, r, c.m.Name, d)
		return
	}
	alg := digest.SHA256
	if a := q.Get("digest-algorithm"); a != "" {
		alg = digest.Algorithm(a)
		if alg != digest.SHA256 && alg != digest.SHA512 {
			s.writeError(w, r, oci.Errorf(oci.CodeDigestInvalid, "unsupported digest algorithm %q", truncate(a)))
			return
		}
	}
	u, err := s.reg.StartUpload(ctx, c.m.Name, alg)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.uploadAccepted(w, r, u, http.StatusAccepted)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, c *call) {
	u, err := s.reg.Upload(r.Context(), c.m.Name, c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.uploadAccepted(w, r, u, http.StatusNoContent)
}

func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, c *call) {
	chunk, err := readChunk(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	u, err := s.reg.AppendUpload(r.Context(), c.m.Name, c.m.Param, chunk)
	if err != nil {
		if u != nil && oci.AsError(err).Code == oci.CodeRangeInvalid {
			// Tell the client where the upload really is so it can resume.
			s.setUploadHeaders(w, r, u)
		}
		s.writeError(w, r, err)
		return
	}
	s.uploadAccepted(w, r, u, http.StatusAccepted)
}

func (s *Server) finishUpload(w http.ResponseWriter, r *http.Request, c *call) {
	dq := r.URL.Query()["digest"]
	if len(dq) == 0 {
		s.writeError(w, r, oci.Errorf(oci.CodeDigestInvalid, "the digest query parameter is required to finish an upload"))
		return
	}
	d, err := oci.ParseDigest(first(dq))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	chunk, err := readChunk(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if chunk.Length == 0 {
		chunk.Body = nil
	}
	if _, err := s.reg.FinishUpload(r.Context(), c.m.Name, c.m.Param, d, chunk); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.blobCreated(w, r, c.m.Name, d)
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, c *call) {
	if err := s.reg.CancelUpload(r.Context(), c.m.Name, c.m.Param); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}

// readChunk reads Content-Range and Content-Length into a Chunk.
func readChunk(r *http.Request) (registry.Chunk, error) {
	c := registry.Chunk{Body: r.Body, Start: -1, Length: r.ContentLength}
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return c, nil
	}
	start, end, ok := parseContentRange(cr)
	if !ok {
		return c, oci.Errorf(oci.CodeRangeInvalid, "malformed Content-Range %q; want <start>-<end>", truncate(cr))
	}
	n := end - start + 1
	if c.Length >= 0 && c.Length != n {
		return c, oci.Errorf(oci.CodeRangeInvalid, "Content-Range %q covers %d bytes but Content-Length is %d", truncate(cr), n, c.Length)
	}
	c.Start, c.Length = start, n
	return c, nil
}

// parseContentRange accepts the spec's "<start>-<end>" and, for clients
// that send the RFC 9110 form, "bytes <start>-<end>/<size|*>".
func parseContentRange(v string) (start, end int64, ok bool) {
	v = strings.TrimSpace(v)
	if rest, found := strings.CutPrefix(v, "bytes"); found {
		rest = strings.TrimLeft(rest, " =")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		v = rest
	}
	a, b, found := strings.Cut(v, "-")
	if !found {
		return 0, 0, false
	}
	if strings.HasPrefix(a, "+") || strings.HasPrefix(b, "+") {
		return 0, 0, false // ParseInt takes a sign; the grammar is digits only
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	// end-start == MaxInt64 would overflow the length, end-start+1.
	if err1 != nil || err2 != nil || start < 0 || end < start || end-start == math.MaxInt64 {
		return 0, 0, false
	}
	return start, end, true
}

func (s *Server) uploadURL(r *http.Request, u *registry.Upload) string {
	// The query is there so that clients appending "&digest=..." to the
	// Location (as the registry tutorial does) build a valid URL.
	return s.url(r, "/v2/"+u.Repo+"/blobs/uploads/"+u.ID+"?_state="+itoa(u.Offset))
}

func (s *Server) setUploadHeaders(w http.ResponseWriter, r *http.Request, u *registry.Upload) {
	h := w.Header()
	h.Set("Location", s.uploadURL(r, u))
	h.Set("Docker-Upload-UUID", u.ID)
	end := u.Offset - 1
	if end < 0 {
		end = 0
	}
	h.Set("Range", "0-"+itoa(end))
}

func (s *Server) uploadAccepted(w http.ResponseWriter, r *http.Request, u *registry.Upload, status int) {
	s.setUploadHeaders(w, r, u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func (s *Server) blobCreated(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) {
	h := w.Header()
	h.Set("Location", s.url(r, "/v2/"+repo+"/blobs/"+d.String()))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// ---- referrers ----

func (s *Server) referrers(w http.ResponseWriter, r *http.Request, c *call) {
	d, err := oci.ParseDigest(c.m.Param)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	artifactType := r.URL.Query().Get("artifactType")
	descs, err := s.reg.Referrers(r.Context(), c.m.Name, d, artifactType)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, r, http.StatusOK, oci.MediaTypeOCIIndex, struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []oci.Descriptor `json:"manifests"`
	}{2, oci.MediaTypeOCIIndex, descs})
}

// ---- helpers ----

// zeroTime tells ServeContent there is no modification time to send.
var zeroTime time.Time

func writeJSON(w http.ResponseWriter, r *http.Request, status int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// absolute makes a signer's URL absolute: object-store URLs already are;
// the embedded signer's are relative to the registry.
func (s *Server) absolute(r *http.Request, u string) string {
	if strings.HasPrefix(u, "/") {
		return s.url(r, u)
	}
	return u
}

// url makes an absolute URL for path: from the configured public URL, or
// from the request's own scheme and Host.
func (s *Server) url(r *http.Request, path string) string {
	if s.publicURL != "" {
		return s.publicURL + path
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

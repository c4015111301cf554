package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// blobURLs is the batch endpoint: GET /v2/<name>/manifests/<reference>/blobs.
// Contract: batch-blob-urls-proposal.txt; platform, ETag and Cache-Control
// are Wharf extensions.
func (s *Server) blobURLs(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	lifetime, err := parseExpiry(q[batch.ParamExpiry])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ref, err := oci.ParseReference(c.m.Param)
	if err != nil {
		// A reference that cannot exist is not found, like one that does not.
		s.writeError(w, r, registry.ErrNotFoundBatch)
		return
	}
	platform := q.Get(batch.ParamPlatform)
	if platform != "" {
		if _, err := oci.ParsePlatform(platform); err != nil {
			s.writeError(w, r, oci.Errorf(batch.CodePlatformInvalid, "platform %q: want os/arch[/variant]", truncate(platform)).WithStatus(http.StatusBadRequest))
			return
		}
	}
	urls, err := s.reg.BlobURLs(r.Context(), c.m.Name, ref, lifetime, platform, s.url(r, ""))
	if err != nil {
		var idx *registry.IndexError
		switch {
		case errors.As(err, &idx):
			msg := fmt.Sprintf("%s is an index; choose one of its manifests (by digest, or with the platform=os/arch[/variant] parameter)", ref)
			if idx.Digest != "" {
				msg = fmt.Sprintf("platform %s of %s is the index %s; choose one of its manifests by digest", truncate(platform), ref, idx.Digest)
			}
			s.writeError(w, r, oci.Errorf(oci.CodeUnsupported, "%s", msg).
				WithStatus(http.StatusUnsupportedMediaType).WithDetail(idx))
		case errors.Is(err, registry.ErrSigning):
			s.log.ErrorContext(r.Context(), "batch endpoint: signing failed", "repo", c.m.Name, "reference", ref.String(), "err", err)
			s.writeError(w, r, oci.Errorf(oci.CodeUnknown, "signing the download URLs failed"))
		default:
			s.writeError(w, r, err)
		}
		return
	}
	if info, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		info.blobs = len(urls.Blobs)
	}
	body, etag := urls.Body()
	h := w.Header()
	h.Set("ETag", etag)
	// A cached answer must still give the caller URLs that live as long as
	// it asked: it may be reused only until expiresAt - lifetime.
	maxAge := int64(time.Until(urls.ExpiresAt.Add(-lifetime)) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(maxAge, 10))
	h.Set("Docker-Content-Digest", urls.ManifestDigest.String())
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// parseExpiry reads the expiry parameter: absent means the default; else
// a plain decimal integer of seconds in [60, 604800].
func parseExpiry(v []string) (time.Duration, error) {
	if len(v) == 0 {
		return batch.DefaultExpiry, nil
	}
	bad := oci.Errorf(batch.CodeExpiryInvalid, "expiry must be an integer number of seconds from %d to %d",
		int(batch.MinExpiry.Seconds()), int(batch.MaxExpiry.Seconds())).WithStatus(http.StatusBadRequest)
	if len(v) > 1 || v[0] == "" || len(v[0]) > 7 {
		return 0, bad
	}
	n := 0
	for _, ch := range []byte(v[0]) {
		if ch < '0' || ch > '9' {
			return 0, bad
		}
		n = n*10 + int(ch-'0')
	}
	d := time.Duration(n) * time.Second
	if batch.CheckExpiry(d) != nil {
		return 0, bad
	}
	return d, nil
}

package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// TestStoreFaultAnswers: a store error wrapping ErrUnavailable is a 503
// with Retry-After, one wrapping ErrInsufficientStorage a 507, both with
// an UNAVAILABLE error body; anything else stays a 500 UNKNOWN.
func TestStoreFaultAnswers(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, c := range []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{fmt.Errorf("manifest: %w", fmt.Errorf("%w: dial tcp: connection refused", registry.ErrUnavailable)), 503, "UNAVAILABLE", "5"},
		{fmt.Errorf("commit: %w: write: no space left on device", registry.ErrInsufficientStorage), 507, "UNAVAILABLE", ""},
		{errors.New("disk on fire"), 500, "UNKNOWN", ""},
	} {
		w := httptest.NewRecorder()
		s.writeError(w, httptest.NewRequest(http.MethodGet, "/v2/a/manifests/b", nil), c.err)
		body, ok := oci.ParseErrorResponse(w.Body.Bytes())
		if !ok || len(body.Errors) != 1 {
			t.Fatalf("%v: body %q", c.err, w.Body)
		}
		if w.Code != c.status || string(body.Errors[0].Code) != c.code || w.Header().Get("Retry-After") != c.retryAfter {
			t.Errorf("%v: %d %s Retry-After %q, want %d %s %q", c.err, w.Code, body.Errors[0].Code, w.Header().Get("Retry-After"), c.status, c.code, c.retryAfter)
		}
	}
}

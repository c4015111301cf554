package server

import (
	"errors"
	"net/http"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// retryAfterUnavailable is the Retry-After (seconds) of a 503 for a store
// that is down: about what a database or object-store restart takes.
const retryAfterUnavailable = "5"

// storeFault maps a store's "cannot now" errors (the sentinels the stores
// wrap around their driver errors) to what a client should see: 503 with
// Retry-After while a store is unreachable, 507 while the blob store is
// full. Both are the client's cue to try again, not a registry bug, so
// they are not 500s. nil for any other error.
func storeFault(w http.ResponseWriter, err error) *oci.Error {
	switch {
	case errors.Is(err, registry.ErrUnavailable):
		w.Header().Set("Retry-After", retryAfterUnavailable)
		return oci.Errorf(oci.CodeUnavailable, "a storage backend is unavailable; try again later")
	case errors.Is(err, registry.ErrInsufficientStorage):
		return oci.Errorf(oci.CodeUnavailable, "the blob store is out of space").WithStatus(http.StatusInsufficientStorage)
	}
	return nil
}

package server

import (
	"net/http"
	"net/url"

	"github.com/wharf-registry/wharf/oci"
)

// queryError refuses a query that url.ParseQuery cannot parse (a bad
// escape, a ';' separator, more parameters than Go accepts). Request.URL's
// Query drops such parameters silently, so without this a request would
// run without the n, tag or digest its caller sent.
func queryError(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		return oci.Errorf(oci.CodeUnsupported, "the query cannot be parsed: %s", truncate(err.Error())).WithStatus(http.StatusBadRequest)
	}
	return nil
}

// MaxTagParams bounds the tag parameters of one manifest PUT
// (PUT /v2/<name>/manifests/<digest>?tag=a&tag=b): each is a row written
// in the manifest's transaction.
const MaxTagParams = 100

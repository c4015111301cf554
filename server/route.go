package server

import (
	"strings"
)

// Route identifies an endpoint. Its String is the route template used in
// logs and metrics: bounded, never a raw path.
type Route int

// The routes of the /v2/ API.
const (
	RouteNone Route = iota
	RouteBase
	RouteCatalog
	RouteTags
	RouteManifest
	RouteManifestBlobs // the batch endpoint
	RouteBlob
	RouteUploadStart
	RouteUpload
	RouteReferrers
	RouteDownload // the signed-download route, outside /v2/
)

var routeNames = [...]string{
	RouteNone:          "unknown",
	RouteBase:          "/v2/",
	RouteCatalog:       "/v2/_catalog",
	RouteTags:          "/v2/{name}/tags/list",
	RouteManifest:      "/v2/{name}/manifests/{reference}",
	RouteManifestBlobs: "/v2/{name}/manifests/{reference}/blobs",
	RouteBlob:          "/v2/{name}/blobs/{digest}",
	RouteUploadStart:   "/v2/{name}/blobs/uploads/",
	RouteUpload:        "/v2/{name}/blobs/uploads/{uuid}",
	RouteReferrers:     "/v2/{name}/referrers/{digest}",
	RouteDownload:      "/_wharf/blobs/{digest}",
}

func (r Route) String() string { return routeNames[r] }

// Match is a parsed /v2/ path: the route, the repository name and the last
// path parameter (reference, digest or upload id), all unvalidated.
type Match struct {
	Route Route
	Name  string
	Param string
}

// ParseV2Path parses a path under /v2/. Repository names contain slashes,
// so the path is parsed from its right end, where the route's fixed words
// are. A name that itself ends in a route word ("a/manifests/x/blobs") is
// read as the route, which is the only reading that lets every route work.
func ParseV2Path(path string) Match {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return Match{Route: RouteBase}
		}
		return Match{}
	}
	if rest == "" {
		return Match{Route: RouteBase}
	}
	if rest == "_catalog" {
		return Match{Route: RouteCatalog}
	}
	// Upload start: <name>/blobs/uploads/ (the trailing slash is optional).
	if n, ok := cutSuffix(rest, "/blobs/uploads/"); ok {
		return Match{Route: RouteUploadStart, Name: n}
	}
	if n, ok := cutSuffix(rest, "/blobs/uploads"); ok {
		return Match{Route: RouteUploadStart, Name: n}
	}
	if n, ok := cutSuffix(rest, "/tags/list"); ok {
		return Match{Route: RouteTags, Name: n}
	}
	// The last segment is a parameter; the one before names the route.
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return Match{}
	}
	head, last := rest[:i], rest[i+1:]
	if last == "" {
		return Match{}
	}
	if last == "blobs" {
		// <name>/manifests/<reference>/blobs
		if j := strings.LastIndexByte(head, '/'); j > 0 {
			if n, ok := cutSuffix(head[:j], "/manifests"); ok && head[j+1:] != "" {
				return Match{Route: RouteManifestBlobs, Name: n, Param: head[j+1:]}
			}
		}
	}
	j := strings.LastIndexByte(head, '/')
	if j <= 0 {
		return Match{}
	}
	name, word := head[:j], head[j+1:]
	switch word {
	case "manifests":
		return Match{Route: RouteManifest, Name: name, Param: last}
	case "blobs":
		return Match{Route: RouteBlob, Name: name, Param: last}
	case "referrers":
		return Match{Route: RouteReferrers, Name: name, Param: last}
	case "uploads":
		if n, ok := cutSuffix(name, "/blobs"); ok {
			return Match{Route: RouteUpload, Name: n, Param: last}
		}
	}
	return Match{}
}

// cutSuffix is strings.CutSuffix that also refuses an empty remainder.
func cutSuffix(s, suffix string) (string, bool) {
	n, ok := strings.CutSuffix(s, suffix)
	return n, ok && n != ""
}

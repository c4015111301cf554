package server

import (
	"strings"
	"testing"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseV2Path(t *testing.T) {
	long := strings.Repeat("a/", 60) + "z"
	for _, tc := range []struct {
		path  string
		route Route
		name  string
		param string
	}{
		// Base and catalog.
		{"/v2", RouteBase, "", ""},
		{"/v2/", RouteBase, "", ""},
		{"/v2/_catalog", RouteCatalog, "", ""},

		// Every route with a one-component name.
		{"/v2/a/tags/list", RouteTags, "a", ""},
		{"/v2/a/manifests/latest", RouteManifest, "a", "latest"},
		{"/v2/a/manifests/" + testDigest, RouteManifest, "a", testDigest},
		{"/v2/a/manifests/latest/blobs", RouteManifestBlobs, "a", "latest"},
		{"/v2/a/manifests/" + testDigest + "/blobs", RouteManifestBlobs, "a", testDigest},
		{"/v2/a/blobs/" + testDigest, RouteBlob, "a", testDigest},
		{"/v2/a/blobs/uploads/", RouteUploadStart, "a", ""},
		{"/v2/a/blobs/uploads", RouteUploadStart, "a", ""},
		{"/v2/a/blobs/uploads/0f6c-uuid", RouteUpload, "a", "0f6c-uuid"},
		{"/v2/a/referrers/" + testDigest, RouteReferrers, "a", testDigest},

		// Names with many slashes.
		{"/v2/org/team/project/app/tags/list", RouteTags, "org/team/project/app", ""},
		{"/v2/org/team/project/app/manifests/v1", RouteManifest, "org/team/project/app", "v1"},
		{"/v2/org/team/project/app/manifests/v1/blobs", RouteManifestBlobs, "org/team/project/app", "v1"},
		{"/v2/org/team/project/app/blobs/" + testDigest, RouteBlob, "org/team/project/app", testDigest},
		{"/v2/org/team/project/app/blobs/uploads/", RouteUploadStart, "org/team/project/app", ""},
		{"/v2/org/team/project/app/blobs/uploads/id", RouteUpload, "org/team/project/app", "id"},
		{"/v2/org/team/project/app/referrers/" + testDigest, RouteReferrers, "org/team/project/app", testDigest},
		{"/v2/" + long + "/manifests/x", RouteManifest, long, "x"},

		// Names containing route words: the right end decides.
		{"/v2/a/blobs/b/tags/list", RouteTags, "a/blobs/b", ""},
		{"/v2/a/blobs/b/manifests/latest", RouteManifest, "a/blobs/b", "latest"},
		{"/v2/a/blobs/b/blobs/" + testDigest, RouteBlob, "a/blobs/b", testDigest},
		{"/v2/a/blobs/b/blobs/uploads/", RouteUploadStart, "a/blobs/b", ""},
		{"/v2/a/blobs/b/blobs/uploads/id", RouteUpload, "a/blobs/b", "id"},
		{"/v2/x/manifests/y/tags/list", RouteTags, "x/manifests/y", ""},
		{"/v2/x/manifests/y/manifests/z", RouteManifest, "x/manifests/y", "z"},
		{"/v2/x/manifests/y/blobs/" + testDigest, RouteBlob, "x/manifests/y", testDigest},
		{"/v2/x/manifests/y/referrers/" + testDigest, RouteReferrers, "x/manifests/y", testDigest},
		{"/v2/x/manifests/y/manifests/z/blobs", RouteManifestBlobs, "x/manifests/y", "z"},
		{"/v2/tags/tags/list", RouteTags, "tags", ""},
		{"/v2/tags/list/tags/list", RouteTags, "tags/list", ""},
		{"/v2/tags/manifests/list", RouteManifest, "tags", "list"},
		{"/v2/manifests/manifests/manifests", RouteManifest, "manifests", "manifests"},
		{"/v2/blobs/blobs/blobs", RouteBlob, "blobs", "blobs"},
		{"/v2/uploads/blobs/uploads/uploads", RouteUpload, "uploads", "uploads"},
		{"/v2/referrers/referrers/referrers", RouteReferrers, "referrers", "referrers"},
		{"/v2/_catalog/tags/list", RouteTags, "_catalog", ""},
		{"/v2/blobs/uploads/blobs/uploads/", RouteUploadStart, "blobs/uploads", ""},
		// A name that ends in "manifests/<x>" followed by "blobs": read as
		// the batch route, the only reading that lets every route work.
		{"/v2/a/manifests/x/blobs", RouteManifestBlobs, "a", "x"},
		// "blobs" as a tag is a plain manifest reference.
		{"/v2/a/manifests/blobs", RouteManifest, "a", "blobs"},
		{"/v2/a/blobs/blobs", RouteBlob, "a", "blobs"},

		// The parameter is never validated here, the name neither.
		{"/v2/A/manifests/%%", RouteManifest, "A", "%%"},
		{"/v2/a//b/manifests/x", RouteManifest, "a//b", "x"},
		{"/v2//a/manifests/x", RouteManifest, "/a", "x"},
		{"/v2/a/b/manifests/x:y", RouteManifest, "a/b", "x:y"},

		// Trailing slashes and missing parameters.
		{"/v2/a/manifests/x/", RouteNone, "", ""},
		{"/v2/a/manifests/", RouteNone, "", ""},
		{"/v2/a/manifests", RouteNone, "", ""},
		{"/v2/a/blobs/", RouteNone, "", ""},
		{"/v2/a/blobs", RouteNone, "", ""},
		{"/v2/a/referrers/", RouteNone, "", ""},
		{"/v2/a/tags/list/", RouteNone, "", ""},
		{"/v2/a/tags/", RouteNone, "", ""},
		{"/v2/a/tags", RouteNone, "", ""},
		{"/v2/a/blobs/uploads/id/", RouteNone, "", ""},
		{"/v2/a/manifests//blobs", RouteNone, "", ""},
		{"/v2/_catalog/", RouteNone, "", ""},

		// Missing names.
		{"/v2/tags/list", RouteNone, "", ""},
		{"/v2//tags/list", RouteNone, "", ""},
		{"/v2/manifests/x", RouteNone, "", ""},
		{"/v2//manifests/x", RouteNone, "", ""},
		{"/v2/blobs/" + testDigest, RouteNone, "", ""},
		{"/v2/blobs/uploads/", RouteNone, "", ""},
		{"/v2/blobs/uploads", RouteNone, "", ""},
		{"/v2//blobs/uploads/", RouteNone, "", ""},
		{"/v2/blobs/uploads/id", RouteNone, "", ""},
		{"/v2/referrers/" + testDigest, RouteNone, "", ""},
		{"/v2/manifests/x/blobs", RouteNone, "", ""},

		// Unknown routes and garbage.
		{"", RouteNone, "", ""},
		{"/", RouteNone, "", ""},
		{"/v1/", RouteNone, "", ""},
		{"/v2x", RouteNone, "", ""},
		{"/v2x/", RouteNone, "", ""},
		{"v2/", RouteNone, "", ""},
		{"/V2/", RouteNone, "", ""},
		{"/v2/a", RouteNone, "", ""},
		{"/v2/a/b", RouteNone, "", ""},
		{"/v2/a/b/c", RouteNone, "", ""},
		{"/v2/a/uploads/x", RouteNone, "", ""},
		{"/v2/a/tag/list", RouteNone, "", ""},
		{"/v2/a/manifest/x", RouteNone, "", ""},
		{"/v2/a/blob/x", RouteNone, "", ""},
		{"/v2/a/_catalog", RouteNone, "", ""},
		{"/v2/_catalog/x", RouteNone, "", ""},
		{"/v2/a/manifests/x/layers", RouteNone, "", ""},
		{"/v2/a/Manifests/x", RouteNone, "", ""},
		{"/v2/a/blobs/uploads/x/y", RouteNone, "", ""},
		{"/v2///", RouteNone, "", ""},
		{"/v2/\x00/manifests", RouteNone, "", ""},
		{"/v2/" + strings.Repeat("/", 100), RouteNone, "", ""},
	} {
		got := ParseV2Path(tc.path)
		want := Match{Route: tc.route, Name: tc.name, Param: tc.param}
		if got != want {
			t.Errorf("ParseV2Path(%q) = {%s %q %q}, want {%s %q %q}",
				tc.path, got.Route, got.Name, got.Param, want.Route, want.Name, want.Param)
		}
	}
}

// buildV2Path is the inverse of ParseV2Path for a match with a name.
// Upload start has two spellings; the one with the trailing slash is built
// when slash is set.
func buildV2Path(m Match, slash bool) string {
	base := "/v2/" + m.Name
	switch m.Route {
	case RouteTags:
		return base + "/tags/list"
	case RouteManifest:
		return base + "/manifests/" + m.Param
	case RouteManifestBlobs:
		return base + "/manifests/" + m.Param + "/blobs"
	case RouteBlob:
		return base + "/blobs/" + m.Param
	case RouteUploadStart:
		if slash {
			return base + "/blobs/uploads/"
		}
		return base + "/blobs/uploads"
	case RouteUpload:
		return base + "/blobs/uploads/" + m.Param
	case RouteReferrers:
		return base + "/referrers/" + m.Param
	}
	return ""
}

func TestParseV2PathRoundTrip(t *testing.T) {
	names := []string{"a", "library/ubuntu", "a/b/c/d/e", "x/manifests/y", "a/blobs/b", "tags", "blobs/uploads", "referrers/r"}
	params := []string{"latest", testDigest, "uuid-1234", "blobs", "manifests", "uploads"}
	for _, name := range names {
		for _, route := range []Route{RouteTags, RouteManifest, RouteManifestBlobs, RouteBlob, RouteUploadStart, RouteUpload, RouteReferrers} {
			for _, param := range params {
				m := Match{Route: route, Name: name, Param: param}
				if route == RouteTags || route == RouteUploadStart {
					m.Param = ""
				}
				if route == RouteBlob && param == "uploads" {
					// "<name>/blobs/uploads" is the upload start route; no
					// digest can be spelled "uploads", so nothing is lost.
					continue
				}
				for _, slash := range []bool{true, false} {
					path := buildV2Path(m, slash)
					got := ParseV2Path(path)
					if got != m {
						t.Errorf("ParseV2Path(%q) = {%s %q %q}, want {%s %q %q}",
							path, got.Route, got.Name, got.Param, m.Route, m.Name, m.Param)
					}
				}
			}
		}
	}
}

func TestRouteString(t *testing.T) {
	for r := RouteNone; r <= RouteReferrers; r++ {
		s := r.String()
		if s == "" {
			t.Errorf("route %d has no name", r)
		}
		if r != RouteNone && !strings.HasPrefix(s, "/v2/") {
			t.Errorf("route %d is named %q", r, s)
		}
	}
}

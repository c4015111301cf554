package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/oci"
)

// acceptManifests is the Accept header of manifest requests.
var acceptManifests = strings.Join([]string{
	oci.MediaTypeOCIManifest, oci.MediaTypeOCIIndex,
	oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList,
}, ", ")

// manifestBlob is a manifest's exact bytes.
type manifestBlob struct {
	MediaType string
	Digest    digest.Digest
	Data      []byte
}

func (m manifestBlob) descriptor() oci.Descriptor {
	return oci.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Data))}
}

// image is one image manifest and where its blobs come from.
type image struct {
	manifest manifestBlob
	platform *oci.Platform
	blobs    []oci.Descriptor // config first, then layers
	src      urlSource
}

// resolved is what a reference names: one image, or an index and the
// images chosen from it.
type resolved struct {
	reg    *registry
	repo   string
	ref    name.Reference
	top    manifestBlob // the image, or the index
	index  bool
	images []*image
}

// Selection picks images from an index.
type Selection struct {
	// Platform is "os/arch[/variant]"; empty means linux and this
	// machine's architecture.
	Platform string
	// AllPlatforms takes every image of an index.
	AllPlatforms bool
}

func (s Selection) platform() string {
	if s.Platform != "" {
		return s.Platform
	}
	return "linux/" + runtime.GOARCH
}

// target is a download URL as handed out at one moment.
type target struct {
	url      string
	expires  time.Time // zero: unknown (resolved by the registry per request)
	registry bool      // a registry URL: needs the registry's auth
	version  int
}

// urlSource hands out blob URLs, resolving them as late as possible.
type urlSource interface {
	// url returns where to download d now, for a download of remaining
	// bytes: a URL that will not expire before it could end.
	url(ctx context.Context, d digest.Digest, remaining int64) (target, error)
	// refresh is called when storage refused t as expired.
	refresh(ctx context.Context, t target) error
}

// batchAnswer is the batch endpoint's 200 body and when its URLs expire
// on this machine's clock (see localExpiry).
type batchAnswer struct {
	batch.Response
	expires time.Time
}

// localExpiry converts the server's expiresAt to this machine's clock,
// using the answer's Date header: with a client clock behind the server's
// the URLs would look valid after they expired (storage refuses them and
// the client re-resolves), and with one ahead they would look expired at
// once, costing a batch call per blob. Differences within the Date
// header's one-second resolution (and a missing or bad header) change
// nothing.
func localExpiry(expiresAt time.Time, date string, now time.Time) time.Time {
	d, err := http.ParseTime(date)
	if err != nil {
		return expiresAt
	}
	skew := d.Sub(now)
	if skew > -2*time.Second && skew < 2*time.Second {
		return expiresAt
	}
	return expiresAt.Add(-skew)
}

// errNoBatch means the registry does not offer the batch endpoint.
var errNoBatch = errors.New("registry does not offer the batch endpoint")

// indexAnswer is the batch endpoint's 415: the reference is an index.
type indexAnswer struct{ manifests []oci.Descriptor }

func (e *indexAnswer) Error() string { return "the reference is an index" }

// NotFoundError is a reference the registry does not know.
type NotFoundError struct{ Ref string }

func (e *NotFoundError) Error() string { return e.Ref + ": manifest unknown" }

// batchCall asks the batch endpoint for the URLs of repo:ref. It returns
// the answer and raw body, errNoBatch (detected, cached per registry),
// *indexAnswer, or another error. An ambiguous 404 is reported as
// errAmbiguous404 for the caller to settle with the standard API.
func (c *Client) batchCall(ctx context.Context, reg *registry, repo, ref, platform string) (*batchAnswer, []byte, error) {
	q := url.Values{}
	q.Set(batch.ParamExpiry, strconv.Itoa(int(c.opts.Expiry/time.Second)))
	if platform != "" {
		q.Set(batch.ParamPlatform, platform)
	}
	path := "/v2/" + repo + "/manifests/" + ref + "/blobs?" + q.Encode()
	resp, err := reg.do(ctx, request{method: http.MethodGet, path: path, scopes: pullScope(repo)})
	var ae *authError
	if errors.As(err, &ae) {
		return nil, nil, &batchRefused{err}
	}
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, err
	}
	e, isOCI := oci.ParseErrorResponse(body)
	var code oci.Code
	if isOCI {
		code = e.Errors[0].Code
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var a batchAnswer
		if err := json.Unmarshal(body, &a); err != nil || a.ManifestDigest == "" || a.Blobs == nil || a.ExpiresAt.IsZero() {
			// a 200 that is not the batch answer: something else lives there
			reg.setBatch(-1)
			return nil, nil, errNoBatch
		}
		reg.setBatch(1)
		a.expires = localExpiry(a.ExpiresAt, resp.Header.Get("Date"), c.opts.Now())
		return &a, body, nil
	case resp.StatusCode == http.StatusUnsupportedMediaType && code == "UNSUPPORTED":
		var d struct {
			Manifests []oci.Descriptor `json:"manifests"`
		}
		if json.Unmarshal(e.Errors[0].Detail, &d) == nil && d.Manifests != nil {
			reg.setBatch(1)
			return nil, nil, &indexAnswer{manifests: d.Manifests}
		}
		reg.setBatch(-1)
		return nil, nil, errNoBatch
	case resp.StatusCode == http.StatusBadRequest && (code == "EXPIRY_INVALID" || code == "PLATFORM_INVALID"):
		reg.setBatch(1)
		return nil, nil, fmt.Errorf("batch endpoint: %s: %s", code, e.Errors[0].Message)
	case resp.StatusCode == http.StatusNotFound:
		// Wharf answers an unknown reference with 404 MANIFEST_UNKNOWN;
		// a registry without the endpoint may answer 404 too. Only the
		// standard API can tell which: the caller asks it.
		if isOCI && code == "MANIFEST_UNKNOWN" {
			return nil, nil, errAmbiguous404
		}
		reg.setBatch(-1)
		return nil, nil, errNoBatch
	case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented ||
		(resp.StatusCode == http.StatusBadRequest && (code == "UNSUPPORTED" || code == "NAME_INVALID" || code == "MANIFEST_INVALID" || code == "TAG_INVALID" || !isOCI)):
		reg.setBatch(-1)
		return nil, nil, errNoBatch
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		// Wharf refusing the caller, or a registry that answers unknown
		// routes so: only the standard API can tell which.
		return nil, nil, &batchRefused{fmt.Errorf("batch endpoint %s/%s%s%s: %s: %.300s", reg.host, repo, refSep(ref), ref, resp.Status, strings.TrimSpace(string(body)))}
	}
	return nil, nil, fmt.Errorf("batch endpoint %s/%s:%s: %s: %.300s", reg.host, repo, ref, resp.Status, strings.TrimSpace(string(body)))
}

var errAmbiguous404 = errors.New("404 MANIFEST_UNKNOWN from the batch endpoint")

// batchRefused is a 401 or 403 on the batch route (or a challenge there
// the client could not answer); pulls fall back to the standard API,
// whose own refusal, if any, is what the user sees.
type batchRefused struct{ err error }

func (e *batchRefused) Error() string { return e.err.Error() }
func (e *batchRefused) Unwrap() error { return e.err }

func (r *registry) setBatch(v int) {
	r.mu.Lock()
	if r.batch != v {
		r.batch = v
		if v < 0 {
			r.c.logf("%s: no batch endpoint, using the standard API", r.host)
		} else {
			r.c.logf("%s: using the batch endpoint", r.host)
		}
	}
	r.mu.Unlock()
}

func (r *registry) batchState() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batch
}

func pullScope(repo string) []string { return []string{"repository:" + repo + ":pull"} }

// getManifest fetches a manifest with the standard API and checks its digest.
func (c *Client) getManifest(ctx context.Context, reg *registry, repo, ref string, scopes []string) (manifestBlob, error) {
	resp, err := reg.do(ctx, request{method: http.MethodGet, path: "/v2/" + repo + "/manifests/" + ref,
		header: http.Header{"Accept": {acceptManifests}}, scopes: scopes})
	if err != nil {
		return manifestBlob{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		drain(resp)
		return manifestBlob{}, &NotFoundError{Ref: reg.host + "/" + repo + refSep(ref) + ref}
	}
	if resp.StatusCode == http.StatusUnauthorized && reg.anonymous(ctx) {
		return manifestBlob{}, fmt.Errorf("GET manifest %s/%s%s%s: %s (no credentials for %s: use --user/--password-stdin or docker login): %s",
			reg.host, repo, refSep(ref), ref, resp.Status, reg.host, readSome(resp))
	}
	if resp.StatusCode != http.StatusOK {
		return manifestBlob{}, fmt.Errorf("GET manifest %s/%s%s%s: %s: %s", reg.host, repo, refSep(ref), ref, resp.Status, readSome(resp))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return manifestBlob{}, err
	}
	alg := digest.SHA256
	if d, err := digest.Parse(ref); err == nil {
		alg = d.Algorithm()
	}
	got := alg.FromBytes(data)
	if d, err := digest.Parse(ref); err == nil && d != got {
		return manifestBlob{}, fmt.Errorf("manifest %s: content has digest %s", ref, got)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		if d, err := digest.Parse(h); err == nil && d.Algorithm() == alg && d != got {
			return manifestBlob{}, fmt.Errorf("manifest %s: registry says %s, content is %s", ref, d, got)
		}
	}
	mt := resp.Header.Get("Content-Type")
	m, err := oci.ParseManifest(mt, data, alg)
	if err != nil {
		return manifestBlob{}, fmt.Errorf("manifest %s: %w", ref, err)
	}
	return manifestBlob{MediaType: m.MediaType, Digest: got, Data: data}, nil
}

func refSep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@"
	}
	return ":"
}

// resolveString parses ref and resolves it.
func (c *Client) resolveString(ctx context.Context, ref string, sel Selection) (name.Reference, *resolved, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	res, err := c.resolve(ctx, r, sel)
	return r, res, err
}

// resolve finds the images ref names: through the batch endpoint when the
// registry offers it (one request for an image), else the standard API.
func (c *Client) resolve(ctx context.Context, ref name.Reference, sel Selection) (*resolved, error) {
	reg := c.registryFor(ref.Context().Registry)
	repo := ref.Context().RepositoryStr()
	id := ref.Identifier()
	out := &resolved{reg: reg, repo: repo, ref: ref}
	if !c.opts.DisableBatch && reg.batchState() >= 0 {
		platform := ""
		if !sel.AllPlatforms {
			platform = sel.platform()
		}
		ans, _, err := c.batchCall(ctx, reg, repo, id, platform)
		var idx *indexAnswer
		var refused *batchRefused
		switch {
		case err == nil:
			img, err := c.imageFromBatch(ctx, reg, repo, ans, nil)
			if err != nil {
				return nil, err
			}
			out.top = img.manifest
			out.images = []*image{img}
			return out, nil
		case errors.As(err, &idx):
			// all platforms: the index itself, then one batch call per child
			top, err := c.getManifest(ctx, reg, repo, id, pullScope(repo))
			if err != nil {
				return nil, err
			}
			return c.resolveIndex(ctx, out, top, sel)
		case errors.Is(err, errAmbiguous404):
			top, err := c.getManifest(ctx, reg, repo, id, pullScope(repo))
			if err != nil {
				return nil, err // not found by either API: a plain 404
			}
			m, _ := oci.ParseManifest(top.MediaType, top.Data, top.Digest.Algorithm())
			if m != nil && m.IsIndex() && platform != "" {
				// the batch endpoint knew the index, not the platform
				return c.resolveIndex(ctx, out, top, sel)
			}
			reg.setBatch(-1)
			return c.resolveStandard(ctx, out, top, sel)
		case errors.As(err, &refused):
			c.logf("%v; trying the standard API", err)
			top, err := c.getManifest(ctx, reg, repo, id, pullScope(repo))
			if err != nil {
				return nil, err
			}
			reg.setBatch(-1) // the standard API serves what the batch route refused
			return c.resolveStandard(ctx, out, top, sel)
		case errors.Is(err, errNoBatch):
		default:
			return nil, err
		}
	}
	top, err := c.getManifest(ctx, reg, repo, id, pullScope(repo))
	if err != nil {
		return nil, err
	}
	return c.resolveStandard(ctx, out, top, sel)
}

// resolveStandard builds images from a manifest fetched with the standard
// API; blob URLs are resolved by the registry when each download starts.
func (c *Client) resolveStandard(ctx context.Context, out *resolved, top manifestBlob, sel Selection) (*resolved, error) {
	m, err := oci.ParseManifest(top.MediaType, top.Data, top.Digest.Algorithm())
	if err != nil {
		return nil, err
	}
	if m.IsIndex() {
		return c.resolveIndex(ctx, out, top, sel)
	}
	out.top = top
	out.images = []*image{{manifest: top, blobs: m.Blobs(), src: &registrySource{c: c, reg: out.reg, repo: out.repo}}}
	return out, nil
}

// resolveIndex picks children of an index and resolves each.
func (c *Client) resolveIndex(ctx context.Context, out *resolved, top manifestBlob, sel Selection) (*resolved, error) {
	m, err := oci.ParseManifest(top.MediaType, top.Data, top.Digest.Algorithm())
	if err != nil {
		return nil, err
	}
	var pick []oci.Descriptor
	if sel.AllPlatforms {
		pick = m.Manifests
	} else {
		want, err := oci.ParsePlatform(sel.platform())
		if err != nil {
			return nil, fmt.Errorf("--platform: %w", err)
		}
		for _, d := range m.Manifests {
			if d.Platform != nil && oci.PlatformMatches(*d.Platform, want) {
				pick = append(pick, d)
				break
			}
		}
		if len(pick) == 0 {
			return nil, fmt.Errorf("%s: no image for platform %s in the index", out.ref, sel.platform())
		}
	}
	out.top, out.index = top, sel.AllPlatforms
	for _, d := range pick {
		img, err := c.resolveChild(ctx, out.reg, out.repo, d)
		if err != nil {
			return nil, err
		}
		out.images = append(out.images, img)
	}
	if !sel.AllPlatforms {
		out.top = out.images[0].manifest
	}
	return out, nil
}

// resolveChild resolves one manifest of an index by digest.
func (c *Client) resolveChild(ctx context.Context, reg *registry, repo string, d oci.Descriptor) (*image, error) {
	if !c.opts.DisableBatch && reg.batchState() > 0 {
		ans, _, err := c.batchCall(ctx, reg, repo, d.Digest.String(), "")
		if err == nil {
			return c.imageFromBatch(ctx, reg, repo, ans, d.Platform)
		}
		var idx *indexAnswer
		var refused *batchRefused
		if !errors.As(err, &idx) && !errors.Is(err, errNoBatch) && !errors.Is(err, errAmbiguous404) && !errors.As(err, &refused) {
			return nil, err
		}
	}
	mb, err := c.getManifest(ctx, reg, repo, d.Digest.String(), pullScope(repo))
	if err != nil {
		return nil, err
	}
	m, err := oci.ParseManifest(mb.MediaType, mb.Data, mb.Digest.Algorithm())
	if err != nil {
		return nil, err
	}
	if m.IsIndex() {
		return nil, fmt.Errorf("%s: nested indexes are not supported", d.Digest)
	}
	return &image{manifest: mb, platform: d.Platform, blobs: m.Blobs(), src: &registrySource{c: c, reg: reg, repo: repo}}, nil
}

// imageFromBatch turns a batch answer into an image whose URLs come from
// a batchSource.
func (c *Client) imageFromBatch(ctx context.Context, reg *registry, repo string, a *batchAnswer, p *oci.Platform) (*image, error) {
	var mb manifestBlob
	if a.Manifest != nil && a.Manifest.Digest == a.ManifestDigest && a.ManifestDigest.Validate() == nil &&
		a.ManifestDigest.Algorithm().FromBytes(a.Manifest.Data) == a.ManifestDigest {
		mb = manifestBlob{MediaType: a.Manifest.MediaType, Digest: a.ManifestDigest, Data: a.Manifest.Data}
	} else {
		var err error
		if mb, err = c.getManifest(ctx, reg, repo, a.ManifestDigest.String(), pullScope(repo)); err != nil {
			return nil, err
		}
	}
	m, err := oci.ParseManifest(mb.MediaType, mb.Data, mb.Digest.Algorithm())
	if err != nil {
		return nil, err
	}
	src := &batchSource{c: c, reg: reg, repo: repo, digest: a.ManifestDigest}
	src.set(a)
	blobs := m.Blobs()
	for _, b := range blobs {
		if _, ok := src.urls[b.Digest]; !ok {
			return nil, fmt.Errorf("batch answer for %s lacks blob %s", a.ManifestDigest, b.Digest)
		}
	}
	return &image{manifest: mb, platform: p, blobs: blobs, src: src}, nil
}

// batchSource hands out the batch endpoint's URLs and fetches fresh ones
// (one request for every blob of the image) when a URL is about to expire
// or was refused.
type batchSource struct {
	c      *Client
	reg    *registry
	repo   string
	digest digest.Digest

	mu      sync.Mutex
	urls    map[digest.Digest]string
	expires time.Time
	version int
}

func (s *batchSource) set(a *batchAnswer) {
	s.urls = make(map[digest.Digest]string, len(a.Blobs))
	for _, b := range a.Blobs {
		s.urls[b.Digest] = b.DownloadURL
	}
	s.expires = a.expires
	s.version++
}

func (s *batchSource) url(ctx context.Context, d digest.Digest, remaining int64) (target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.c.opts.DisableReResolve {
		margin := s.c.margin(remaining)
		if s.c.opts.Now().Add(margin).After(s.expires) {
			s.c.logf("%s: URLs expire at %s, within the %s margin: re-resolving", d.Encoded()[:12], s.expires.Format(time.RFC3339), margin.Round(time.Second))
			if err := s.refreshLocked(ctx); err != nil {
				return target{}, err
			}
		}
	}
	return target{url: s.urls[d], expires: s.expires, version: s.version}, nil
}

func (s *batchSource) refresh(ctx context.Context, t target) error {
	if s.c.opts.DisableReResolve {
		return ErrURLExpired
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.version != s.version {
		return nil // another download already fetched fresh URLs
	}
	return s.refreshLocked(ctx)
}

func (s *batchSource) refreshLocked(ctx context.Context) error {
	a, _, err := s.c.batchCall(ctx, s.reg, s.repo, s.digest.String(), "")
	if err != nil {
		return fmt.Errorf("re-resolving URLs of %s: %w", s.digest, err)
	}
	s.c.stats.reresolutions.Add(1)
	s.set(a)
	return nil
}

// registrySource downloads through the registry's blob URL: the registry
// resolves (and may redirect) each request when it is sent, so a URL is
// never older than the request.
type registrySource struct {
	c    *Client
	reg  *registry
	repo string
}

func (s *registrySource) url(_ context.Context, d digest.Digest, _ int64) (target, error) {
	return target{url: "/v2/" + s.repo + "/blobs/" + d.String(), registry: true}, nil
}

func (s *registrySource) refresh(context.Context, target) error {
	if s.c.opts.DisableReResolve {
		return ErrURLExpired
	}
	// the next GET goes through the registry, which hands out a new URL
	s.c.stats.reresolutions.Add(1)
	return nil
}

// BlobURLs returns the batch endpoint's answer for ref as the registry
// sent it (wharf blobs). platform picks an image of an index.
func (c *Client) BlobURLs(ctx context.Context, ref string, platform string) ([]byte, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	reg := c.registryFor(r.Context().Registry)
	_, body, err := c.batchCall(ctx, reg, r.Context().RepositoryStr(), r.Identifier(), platform)
	var idx *indexAnswer
	switch {
	case errors.As(err, &idx):
		var ps []string
		for _, m := range idx.manifests {
			if m.Platform != nil {
				ps = append(ps, platformString(m.Platform))
			}
		}
		return nil, fmt.Errorf("%s is an index; choose one with --platform (%s)", ref, strings.Join(ps, ", "))
	case errors.Is(err, errAmbiguous404):
		return nil, &NotFoundError{Ref: ref}
	}
	return body, err
}

func platformString(p *oci.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

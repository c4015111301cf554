package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// CopyOptions tune Copy.
type CopyOptions struct {
	// Platform copies one image of an index; empty copies the whole index.
	Platform string
	// Referrers also copies what refers to the copied manifests
	// (signatures, SBOMs, attestations), recursively.
	Referrers bool
	// TempDir holds blobs between download and upload (default os.TempDir).
	TempDir string
}

// copier is one Copy in progress.
type copier struct {
	c        *Client
	src, dst name.Repository
	sreg     *registry
	dreg     *registry
	tmp      string
	done     map[digest.Digest]bool // manifests copied
	out      *Result
}

// Copy copies src to dst, registry to registry: every blob verified on
// the way, blobs the destination has skipped, cross-repository mounts
// when both are on one registry, indexes whole, referrers on request.
func (c *Client) Copy(ctx context.Context, src, dst string, o CopyOptions) (*Result, error) {
	sr, err := c.ParseReference(src)
	if err != nil {
		return nil, err
	}
	dr, err := c.ParseReference(dst)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(o.TempDir, "wharf-copy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cp := &copier{c: c, src: sr.Context(), dst: dr.Context(), sreg: c.registryFor(sr.Context().Registry),
		dreg: c.registryFor(dr.Context().Registry), tmp: tmp, done: map[digest.Digest]bool{}}
	sel := Selection{Platform: o.Platform, AllPlatforms: o.Platform == ""}
	res, err := c.resolve(ctx, sr, sel)
	if err != nil {
		return nil, err
	}
	cp.out = &Result{Reference: dr.String(), Digest: res.top.Digest, MediaType: res.top.MediaType, Images: len(res.images), Batch: cp.sreg.batchState() > 0}
	if err := cp.copyResolved(ctx, res); err != nil {
		return nil, err
	}
	// the tag (or digest) the user named
	tag := dr.Identifier()
	if _, ok := dr.(name.Digest); ok {
		tag = res.top.Digest.String()
	}
	if err := cp.putManifest(ctx, res.top, tag); err != nil {
		return nil, err
	}
	if o.Referrers {
		if err := cp.copyReferrers(ctx, res); err != nil {
			return nil, err
		}
	}
	return cp.out, nil
}

// copyResolved copies the blobs and child manifests of res (not its top
// manifest's tag).
func (cp *copier) copyResolved(ctx context.Context, res *resolved) error {
	seen := map[digest.Digest]bool{}
	var jobs []blobJob
	for _, img := range res.images {
		for _, b := range img.blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				jobs = append(jobs, blobJob{desc: b, src: img.src, reg: res.reg, repo: res.repo})
				cp.out.Size += b.Size
			}
		}
	}
	cp.out.Blobs += len(jobs)
	if err := runJobs(ctx, cp.c.opts.Jobs, jobs, cp.copyBlob); err != nil {
		return err
	}
	for _, img := range res.images {
		if img.manifest.Digest != res.top.Digest {
			if err := cp.putManifest(ctx, img.manifest, img.manifest.Digest.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (cp *copier) dstScopes() []string {
	s := []string{"repository:" + cp.dst.RepositoryStr() + ":pull,push"}
	if cp.sreg == cp.dreg && cp.src.RepositoryStr() != cp.dst.RepositoryStr() {
		s = append(s, "repository:"+cp.src.RepositoryStr()+":pull")
	}
	return s
}

// copyBlob makes one blob present in the destination: skipped when it is
// there (HEAD), mounted when the destination can, else downloaded
// (verified) and uploaded.
func (cp *copier) copyBlob(ctx context.Context, j blobJob) error {
	c, d := cp.c, j.desc.Digest
	drepo := cp.dst.RepositoryStr()
	resp, err := cp.dreg.do(ctx, request{method: http.MethodHead, path: "/v2/" + drepo + "/blobs/" + d.String(), scopes: cp.dstScopes()})
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode == http.StatusOK {
		c.stats.skipped.Add(1)
		c.logf("%s: already in %s", short(d), cp.dst)
		return nil
	}
	location := ""
	if cp.sreg == cp.dreg && cp.src.RepositoryStr() != drepo {
		q := url.Values{"mount": {d.String()}, "from": {cp.src.RepositoryStr()}}
		resp, err := cp.dreg.do(ctx, request{method: http.MethodPost, path: "/v2/" + drepo + "/blobs/uploads/?" + q.Encode(), scopes: cp.dstScopes(), noRetry: true})
		if err != nil {
			return err
		}
		drain(resp)
		switch resp.StatusCode {
		case http.StatusCreated:
			c.stats.mounted.Add(1)
			c.logf("%s: mounted from %s", short(d), cp.src.RepositoryStr())
			return nil
		case http.StatusAccepted:
			location = resp.Header.Get("Location")
		}
	}
	path := filepath.Join(cp.tmp, d.Encoded())
	if err := c.fetchBlob(ctx, j, path, path+".partial"); err != nil {
		return err
	}
	defer os.Remove(path)
	return cp.upload(ctx, path, j.desc, location)
}

// upload pushes a verified file: POST for a session (unless one is
// given), then one PUT with the bytes and the digest.
func (cp *copier) upload(ctx context.Context, path string, desc oci.Descriptor, location string) error {
	drepo := cp.dst.RepositoryStr()
	if location == "" {
		resp, err := cp.dreg.do(ctx, request{method: http.MethodPost, path: "/v2/" + drepo + "/blobs/uploads/", scopes: cp.dstScopes()})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("start upload to %s: %s: %s", cp.dst, resp.Status, readSome(resp))
		}
		drain(resp)
		location = resp.Header.Get("Location")
	}
	u, err := cp.absolute(location)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", desc.Digest.String())
	u.RawQuery = q.Encode()
	resp, err := cp.dreg.do(ctx, request{method: http.MethodPut, path: u.String(), scopes: cp.dstScopes(),
		header: http.Header{"Content-Type": {"application/octet-stream"}},
		body: func() (io.ReadCloser, int64, error) {
			f, err := os.Open(path)
			return f, desc.Size, err
		}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("upload %s to %s: %s: %s", short(desc.Digest), cp.dst, resp.Status, readSome(resp))
	}
	drain(resp)
	return nil
}

func (cp *copier) absolute(location string) (*url.URL, error) {
	base, err := url.Parse(cp.dreg.url("/"))
	if err != nil {
		return nil, err
	}
	u, err := base.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("bad upload location %q: %w", location, err)
	}
	return u, nil
}

// putManifest pushes a manifest under a tag or its digest.
func (cp *copier) putManifest(ctx context.Context, m manifestBlob, ref string) error {
	drepo := cp.dst.RepositoryStr()
	resp, err := cp.dreg.do(ctx, request{method: http.MethodPut, path: "/v2/" + drepo + "/manifests/" + ref, scopes: cp.dstScopes(),
		header: http.Header{"Content-Type": {m.MediaType}},
		body: func() (io.ReadCloser, int64, error) {
			return io.NopCloser(bytes.NewReader(m.Data)), int64(len(m.Data)), nil
		}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT manifest %s:%s: %s: %s", cp.dst, ref, resp.Status, readSome(resp))
	}
	subjectKnown := resp.Header.Get("OCI-Subject") != ""
	drain(resp)
	cp.done[m.Digest] = true
	if !subjectKnown {
		parsed, err := oci.ParseManifest(m.MediaType, m.Data, m.Digest.Algorithm())
		if err == nil && parsed.Subject != nil {
			// the destination has no referrers API: keep the fallback tag
			return cp.addReferrerTag(ctx, *parsed.Subject, m, parsed)
		}
	}
	return nil
}

// addReferrerTag maintains the referrers tag schema (<alg>-<hex>) on a
// registry without the referrers API (distribution-spec 1.1).
func (cp *copier) addReferrerTag(ctx context.Context, subject oci.Descriptor, m manifestBlob, parsed *oci.Manifest) error {
	tag := subject.Digest.Algorithm().String() + "-" + subject.Digest.Encoded()
	idx := struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []oci.Descriptor `json:"manifests"`
	}{SchemaVersion: 2, MediaType: oci.MediaTypeOCIIndex}
	existing, err := cp.c.getManifest(ctx, cp.dreg, cp.dst.RepositoryStr(), tag, cp.dstScopes())
	var nf *NotFoundError
	switch {
	case err == nil:
		if err := json.Unmarshal(existing.Data, &idx); err != nil {
			return err
		}
	case errors.As(err, &nf):
	default:
		return err
	}
	for _, d := range idx.Manifests {
		if d.Digest == m.Digest {
			return nil
		}
	}
	desc := m.descriptor()
	desc.ArtifactType = parsed.ArtifactType
	desc.Annotations = parsed.Annotations
	idx.Manifests = append(idx.Manifests, desc)
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return cp.putManifest(ctx, manifestBlob{MediaType: oci.MediaTypeOCIIndex, Digest: digest.FromBytes(b), Data: b}, tag)
}

// copyReferrers copies the referrers of every manifest copied so far,
// and theirs, breadth first.
func (cp *copier) copyReferrers(ctx context.Context, res *resolved) error {
	queue := []digest.Digest{res.top.Digest}
	for _, img := range res.images {
		queue = append(queue, img.manifest.Digest)
	}
	visited := map[digest.Digest]bool{}
	for len(queue) > 0 && len(visited) < 10000 {
		d := queue[0]
		queue = queue[1:]
		if visited[d] {
			continue
		}
		visited[d] = true
		refs, err := cp.listReferrers(ctx, d)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if cp.done[r.Digest] {
				continue
			}
			rr, err := cp.c.resolve(ctx, cp.src.Digest(r.Digest.String()), Selection{AllPlatforms: true})
			if err != nil {
				return fmt.Errorf("referrer %s of %s: %w", r.Digest, d, err)
			}
			if err := cp.copyResolved(ctx, rr); err != nil {
				return err
			}
			if err := cp.putManifest(ctx, rr.top, rr.top.Digest.String()); err != nil {
				return err
			}
			cp.c.logf("referrer %s (%s) of %s copied", short(r.Digest), r.ArtifactType, short(d))
			queue = append(queue, r.Digest)
		}
	}
	return nil
}

// listReferrers asks the source's referrers API, falling back to the
// referrers tag schema.
func (cp *copier) listReferrers(ctx context.Context, d digest.Digest) ([]oci.Descriptor, error) {
	repo := cp.src.RepositoryStr()
	resp, err := cp.sreg.do(ctx, request{method: http.MethodGet, path: "/v2/" + repo + "/referrers/" + d.String(),
		header: http.Header{"Accept": {oci.MediaTypeOCIIndex}}, scopes: pullScope(repo)})
	if err != nil {
		return nil, err
	}
	var idx struct {
		Manifests []oci.Descriptor `json:"manifests"`
	}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), oci.MediaTypeOCIIndex) {
		defer resp.Body.Close()
		if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&idx); err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", d, err)
		}
		return idx.Manifests, nil
	}
	drain(resp)
	m, err := cp.c.getManifest(ctx, cp.sreg, repo, d.Algorithm().String()+"-"+d.Encoded(), pullScope(repo))
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(m.Data, &idx); err != nil {
		return nil, err
	}
	return idx.Manifests, nil
}

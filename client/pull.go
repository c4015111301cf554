package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/atomicfile"
	"github.com/wharf-registry/wharf/oci"
)

// Result describes what a pull, export or copy did.
type Result struct {
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Images    int           `json:"images"`
	Blobs     int           `json:"blobs"`
	Size      int64         `json:"size"`
	// Batch is whether the source registry's batch endpoint was used.
	Batch bool `json:"batch"`
}

// partialDir holds downloads in progress inside an output directory; it
// is removed when a pull completes, and resumed from when one did not.
const partialDir = ".wharf-partial"

// Pull downloads ref into dir as an OCI image layout. Blobs already in the
// layout are verified and kept; interrupted downloads are resumed.
func (c *Client) Pull(ctx context.Context, ref string, dir string, sel Selection) (*Result, error) {
	r, res, err := c.resolveString(ctx, ref, sel)
	if err != nil {
		return nil, err
	}
	out, err := c.writeLayout(ctx, res, dir)
	if err != nil {
		return nil, err
	}
	if err := addToIndex(dir, res.top.descriptor(), r, c.opts.Fsync); err != nil {
		return nil, err
	}
	return out, nil
}

// writeLayout downloads res's blobs and manifests into the layout at dir.
func (c *Client) writeLayout(ctx context.Context, res *resolved, dir string) (*Result, error) {
	out := &Result{Reference: res.ref.String(), Digest: res.top.Digest, MediaType: res.top.MediaType, Images: len(res.images), Batch: res.reg.batchState() > 0}
	partial := filepath.Join(dir, partialDir)
	if err := os.MkdirAll(partial, 0o755); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), c.opts.Fsync); err != nil {
		return nil, err
	}
	seen := map[digest.Digest]bool{}
	var jobs []blobJob
	for _, img := range res.images {
		for _, b := range img.blobs {
			if seen[b.Digest] {
				continue
			}
			seen[b.Digest] = true
			jobs = append(jobs, blobJob{desc: b, src: img.src, reg: res.reg, repo: res.repo})
			out.Size += b.Size
		}
	}
	out.Blobs = len(jobs)
	for _, j := range jobs {
		if err := os.MkdirAll(filepath.Join(dir, "blobs", j.desc.Digest.Algorithm().String()), 0o755); err != nil {
			return nil, err
		}
	}
	err := runJobs(ctx, c.opts.Jobs, jobs, func(ctx context.Context, j blobJob) error {
		return c.fetchBlob(ctx, j, blobPath(dir, j.desc.Digest), filepath.Join(partial, j.desc.Digest.Algorithm().String()+"-"+j.desc.Digest.Encoded()))
	})
	if err != nil {
		return nil, err
	}
	// manifests last: a layout never names a manifest whose blobs are missing
	for _, img := range res.images {
		if err := writeBlob(dir, img.manifest, c.opts.Fsync); err != nil {
			return nil, err
		}
	}
	if res.index {
		if err := writeBlob(dir, res.top, c.opts.Fsync); err != nil {
			return nil, err
		}
	}
	_ = os.Remove(partial) // only when empty: nothing half-done is lost
	return out, nil
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func writeBlob(dir string, m manifestBlob, sync bool) error {
	if m.Digest.Algorithm().FromBytes(m.Data) != m.Digest {
		return fmt.Errorf("manifest %s: digest mismatch", m.Digest)
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", m.Digest.Algorithm().String()), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(blobPath(dir, m.Digest), m.Data, sync)
}

// writeFileAtomic writes data to a temporary file and renames it; sync
// (Options.Fsync) flushes it first, like the blobs. Without it a file a
// crash tore is rewritten by the next pull, which writes the manifests,
// index.json and oci-layout every time.
func writeFileAtomic(path string, data []byte, sync bool) error {
	return atomicfile.WriteFile(path, data, atomicfile.Options{Mode: 0o644, Sync: sync})
}

// addToIndex records desc in the layout's index.json under ref's tag,
// replacing an entry of the same name.
func addToIndex(dir string, desc oci.Descriptor, ref name.Reference, sync bool) error {
	path := filepath.Join(dir, "index.json")
	idx := struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []oci.Descriptor  `json:"manifests"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	}{SchemaVersion: 2, MediaType: oci.MediaTypeOCIIndex}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &idx); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	const refName = "org.opencontainers.image.ref.name"
	if t, ok := ref.(name.Tag); ok {
		desc.Annotations = map[string]string{refName: t.TagStr()}
	}
	kept := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		same := m.Digest == desc.Digest && m.Annotations[refName] == desc.Annotations[refName]
		if same || (desc.Annotations[refName] != "" && m.Annotations[refName] == desc.Annotations[refName]) {
			continue
		}
		kept = append(kept, m)
	}
	idx.Manifests = append(kept, desc)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, sync)
}

// Export writes ref as a docker-archive tarball (what `docker load` and
// `podman load` read) to file. The blobs are downloaded like Pull's (into
// a temporary layout next to file), then written with go-containerregistry's
// tarball package.
func (c *Client) Export(ctx context.Context, ref string, file string, sel Selection) (*Result, error) {
	if sel.AllPlatforms {
		return nil, errors.New("export writes one image: choose it with --platform")
	}
	r, res, err := c.resolveString(ctx, ref, sel)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(abs), ".wharf-export-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out, err := c.writeLayout(ctx, res, tmp)
	if err != nil {
		return nil, err
	}
	if err := addToIndex(tmp, res.top.descriptor(), r, c.opts.Fsync); err != nil {
		return nil, err
	}
	lp, err := layout.FromPath(tmp)
	if err != nil {
		return nil, err
	}
	h, err := v1.NewHash(res.top.Digest.String())
	if err != nil {
		return nil, err
	}
	img, err := lp.Image(h)
	if err != nil {
		return nil, err
	}
	tag := r
	if _, ok := r.(name.Tag); !ok {
		// docker load wants a name; a digest reference has no tag
		tag = r.Context().Tag("latest")
	}
	err = atomicfile.Write(abs, atomicfile.Options{Mode: 0o644, Sync: true}, func(w io.Writer) error {
		return tarball.Write(tag, img, w)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

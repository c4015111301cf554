package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/metadata/sqlite"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/signer"
)

// env is a registry core over a real SQLite store and a real filesystem
// blob store, with a clock the test moves.
type env struct {
	t   *testing.T
	ctx context.Context
	reg *registry.Registry

	mu  sync.Mutex
	now time.Time
}

// newEnv builds the core directly (no HTTP). opts.Now is the env's clock
// and, when withSigner, opts.Signer a local HMAC signer.
func newEnv(t *testing.T, opts registry.Options, withSigner bool) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	meta, err := sqlite.Open(ctx, filepath.Join(dir, "wharf.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := filesystem.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, now: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	opts.Now = e.clock
	if withSigner {
		s, err := signer.NewLocal(signer.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, signer.MinSecretBytes)})
		if err != nil {
			t.Fatal(err)
		}
		opts.Signer = s
	}
	e.reg = registry.New(meta, blobs, opts)
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

// blob uploads content to repo in one request and returns its descriptor.
func (e *env) blob(repo, mediaType, content string) oci.Descriptor {
	e.t.Helper()
	d := digest.FromString(content)
	if _, err := e.reg.PutBlob(e.ctx, repo, d, registry.Chunk{Body: strings.NewReader(content), Start: -1, Length: int64(len(content))}); err != nil {
		e.t.Fatalf("push blob to %s: %v", repo, err)
	}
	return oci.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(content))}
}

// image pushes a config and layers to repo and returns an image manifest
// over them (not pushed).
func (e *env) image(repo, name string, layers int) []byte {
	e.t.Helper()
	cfg := e.blob(repo, configType, `{"name":"`+name+`"}`)
	var ls []oci.Descriptor
	for i := range layers {
		ls = append(ls, e.blob(repo, layerType, name+" layer "+string(rune('a'+i))))
	}
	return imageManifest(cfg, ls...)
}

// push stores payload (an OCI manifest or index, by its own mediaType)
// under ref and returns its descriptor.
func (e *env) push(repo, ref string, payload []byte, tags ...string) oci.Descriptor {
	e.t.Helper()
	r, err := oci.ParseReference(ref)
	if err != nil {
		e.t.Fatal(err)
	}
	mt := mediaTypeOf(e.t, payload)
	m, err := e.reg.PutManifest(e.ctx, repo, r, mt, payload, tags...)
	if err != nil {
		e.t.Fatalf("push manifest %s:%s: %v", repo, ref, err)
	}
	return oci.Descriptor{MediaType: mt, Digest: m.Digest, Size: int64(len(payload))}
}

// resolve returns the digest ref names in repo, or the error code.
func (e *env) resolve(repo, ref string) (digest.Digest, error) {
	r, err := oci.ParseReference(ref)
	if err != nil {
		e.t.Fatal(err)
	}
	rec, err := e.reg.Manifest(e.ctx, repo, r)
	return rec.Digest, err
}

const (
	configType = "application/vnd.oci.image.config.v1+json"
	layerType  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

func mediaTypeOf(t *testing.T, payload []byte) string {
	var v struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		t.Fatal(err)
	}
	return v.MediaType
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// imageManifest is an OCI image manifest; extra fields (subject,
// artifactType, annotations) are merged in.
func imageManifest(cfg oci.Descriptor, layers ...oci.Descriptor) []byte {
	return imageManifestWith(nil, cfg, layers...)
}

func imageManifestWith(extra map[string]any, cfg oci.Descriptor, layers ...oci.Descriptor) []byte {
	if layers == nil {
		layers = []oci.Descriptor{}
	}
	m := map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "config": cfg, "layers": layers}
	for k, v := range extra {
		m[k] = v
	}
	return mustJSON(m)
}

// index is an OCI index over children.
func index(children ...oci.Descriptor) []byte {
	if children == nil {
		children = []oci.Descriptor{}
	}
	return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex, "manifests": children})
}

// onPlatform returns d as an index entry for os/arch[/variant].
func onPlatform(d oci.Descriptor, os, arch, variant string) oci.Descriptor {
	d.Platform = &oci.Platform{OS: os, Architecture: arch, Variant: variant}
	return d
}

// codeOf returns the OCI code of err ("" for nil, "not an oci.Error" for
// anything else, which the server would send as a 500).
func codeOf(err error) oci.Code {
	if err == nil {
		return ""
	}
	var oe *oci.Error
	if !errors.As(err, &oe) {
		return "not an oci.Error: " + oci.Code(err.Error())
	}
	return oe.Code
}

// wantCode fails unless err carries code ("" for no error).
func wantCode(t *testing.T, what string, err error, code oci.Code) {
	t.Helper()
	if got := codeOf(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// detail returns the JSON form of an *oci.Error's detail (what a client sees).
func detail(t *testing.T, err error) map[string]any {
	t.Helper()
	var oe *oci.Error
	if !errors.As(err, &oe) {
		t.Fatalf("%v is not an *oci.Error", err)
	}
	var out map[string]any
	if err := json.Unmarshal(mustJSON(oe.Detail), &out); err != nil {
		t.Fatalf("detail %v: %v", oe.Detail, err)
	}
	return out
}

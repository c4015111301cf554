// Package batch is the wire format of the batch blob-URL endpoint,
// GET /v2/<name>/manifests/<reference>/blobs?expiry=N
// (batch-blob-urls-proposal.txt): the answer's types, the expiry limits
// and the error codes, shared by the registry that builds answers, the
// server that sends them and the client that reads them.
package batch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
)

// The expiry parameter's limits and its default (the proposal's).
const (
	MinExpiry     = 60 * time.Second
	MaxExpiry     = 604800 * time.Second // 7 days, S3's pre-signing limit
	DefaultExpiry = 3600 * time.Second
)

// Query parameters: expiry (seconds) is the proposal's, platform
// (os/arch[/variant], to pick an image of an index) Wharf's.
const (
	ParamExpiry   = "expiry"
	ParamPlatform = "platform"
)

// Wharf's error codes for the parameters (the OCI spec lets registries add
// codes; these name exactly what was wrong). Both come with a 400.
const (
	CodeExpiryInvalid   oci.Code = "EXPIRY_INVALID"
	CodePlatformInvalid oci.Code = "PLATFORM_INVALID"
)

// CheckExpiry refuses a lifetime outside [MinExpiry, MaxExpiry].
func CheckExpiry(d time.Duration) error {
	if d < MinExpiry || d > MaxExpiry {
		return fmt.Errorf("expiry %s: must be from %ds to %dh", d, int(MinExpiry.Seconds()), int(MaxExpiry.Hours()))
	}
	return nil
}

// ClampExpiry is d moved into [MinExpiry, MaxExpiry].
func ClampExpiry(d time.Duration) time.Duration { return min(max(d, MinExpiry), MaxExpiry) }

// Response is the endpoint's 200 body. A Response the registry builds is
// shared by every caller it is cached for: it must not change once Body
// has been called.
type Response struct {
	ManifestDigest digest.Digest `json:"manifestDigest"`
	// ExpiresAt is the earliest expiry of the URLs, on the registry's clock.
	ExpiresAt time.Time `json:"expiresAt"`
	TotalSize int64     `json:"totalSize"`
	// Blobs are the config, then the layers in manifest order.
	Blobs []Blob `json:"blobs"`
	// Manifest is the image manifest itself as an OCI descriptor with its
	// bytes in data (base64), a Wharf extension: a client that writes the
	// manifest out (wharf pull) needs no second request to the registry.
	Manifest *Manifest `json:"manifest,omitempty"`

	once sync.Once
	body []byte
	etag string
}

// Blob is one blob of a Response.
type Blob struct {
	Digest      digest.Digest `json:"digest"`
	Size        int64         `json:"size"`
	MediaType   string        `json:"mediaType"`
	Kind        string        `json:"kind"` // "config" or "layer"
	DownloadURL string        `json:"downloadUrl"`
}

// Manifest is an OCI descriptor carrying the manifest's bytes.
type Manifest struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Data      []byte        `json:"data"`
}

// Body returns the encoded answer and its strong ETag (a hash of those
// bytes), computed once: answers are cached and shared, so a repeated
// call costs no encoding.
func (r *Response) Body() (body []byte, etag string) {
	r.once.Do(func() {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // keep '&' in URLs readable
		_ = enc.Encode(r)
		r.body = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		sum := sha256.Sum256(r.body)
		r.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	})
	return r.body, r.etag
}

// Package cdnhmac signs blob URLs with an HMAC token, the scheme most CDNs
// offer for signed URLs (Cloudflare's signed-URL Workers recipe, Fastly,
// Bunny, Akamai-style token auth configured for HMAC-SHA256): the CDN holds
// the same secret, recomputes
//
//	hex(HMAC-SHA256(secret, path + expires))
//
// and refuses a request whose signature differs or whose expires (Unix
// seconds) has passed. path is the URL path as sent (escaped), expires the
// decimal string in the query. The host is the CDN's, which may differ
// from the storage host: the URL is signed for the host the client calls.
package cdnhmac

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wharf-registry/wharf/registry"
)

// Options configure a Signer.
type Options struct {
	// BaseURL is the CDN's URL (https://cdn.example.com[/path]).
	BaseURL string
	// Secret is the shared HMAC key (16 bytes or more).
	Secret []byte
	// KeyID, when set, is sent in KeyIDParam so the CDN can rotate keys.
	KeyID string
	// Query parameter names; empty: the Default* names.
	ExpiresParam, SignatureParam, KeyIDParam string
	// StripPrefix is removed from each object key (see cloudfront).
	StripPrefix string
}

// The query parameter names a signer uses unless told others.
const (
	DefaultExpiresParam   = "expires"
	DefaultSignatureParam = "signature"
	DefaultKeyIDParam     = "kid"
)

// Signer is a registry.Signer for HMAC-token CDNs.
type Signer struct {
	o    Options
	base *url.URL
}

var _ registry.Signer = (*Signer)(nil)

// New returns a Signer.
func New(o Options) (*Signer, error) {
	u, err := url.Parse(strings.TrimSuffix(o.BaseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("cdn_hmac signer: base URL %q: want https://host[/path]", o.BaseURL)
	}
	if len(o.Secret) < 16 {
		return nil, errors.New("cdn_hmac signer: the secret must be at least 16 bytes")
	}
	if o.ExpiresParam == "" {
		o.ExpiresParam = DefaultExpiresParam
	}
	if o.SignatureParam == "" {
		o.SignatureParam = DefaultSignatureParam
	}
	if o.KeyIDParam == "" {
		o.KeyIDParam = DefaultKeyIDParam
	}
	return &Signer{o: o, base: u}, nil
}

// Sign returns the signature of path (escaped, as sent) and expiry.
func Sign(secret []byte, path string, expires int64) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(path))
	m.Write([]byte(strconv.FormatInt(expires, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// SignBlob implements registry.Signer.
func (s *Signer) SignBlob(_ context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	if b.Key == "" {
		return registry.SignedURL{}, errors.New("cdn_hmac signer: blob has no object key")
	}
	key := strings.TrimPrefix(b.Key, s.o.StripPrefix)
	path := s.base.EscapedPath() + "/" + (&url.URL{Path: key}).EscapedPath()
	exp := expires.Unix()
	q := url.Values{}
	q.Set(s.o.ExpiresParam, strconv.FormatInt(exp, 10))
	if s.o.KeyID != "" {
		q.Set(s.o.KeyIDParam, s.o.KeyID)
	}
	q.Set(s.o.SignatureParam, Sign(s.o.Secret, path, exp))
	u := url.URL{Scheme: s.base.Scheme, Host: s.base.Host, RawPath: path, RawQuery: q.Encode()}
	u.Path, _ = url.PathUnescape(path)
	return registry.SignedURL{URL: u.String(), Expires: time.Unix(exp, 0)}, nil
}

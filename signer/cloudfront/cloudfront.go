// Package cloudfront signs blob URLs for Amazon CloudFront: canned-policy
// signed URLs (a key pair id and an RSA private key whose public key is in
// a CloudFront key group), so blob downloads go to the CDN, not the
// registry or the bucket. The distribution's origin is the blob bucket.
package cloudfront

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"

	"github.com/wharf-registry/wharf/registry"
)

// Options configure a Signer.
type Options struct {
	// BaseURL is the distribution's URL, https://d111111abcdef8.cloudfront.net
	// (a path is allowed: it is prepended to every object key).
	BaseURL string
	// KeyPairID is the CloudFront public key id.
	KeyPairID string
	// PrivateKey signs (RSA; see LoadPrivateKey).
	PrivateKey crypto.Signer
	// StripPrefix is removed from each object key first: set it to the
	// storage prefix when the distribution's origin path already has it.
	StripPrefix string
}

// Signer is a registry.Signer for CloudFront.
type Signer struct {
	base   string
	strip  string
	signer *sign.URLSigner
}

var _ registry.Signer = (*Signer)(nil)

// New returns a Signer.
func New(o Options) (*Signer, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("cloudfront signer: base URL %q: want https://host[/path]", o.BaseURL)
	}
	if o.KeyPairID == "" || o.PrivateKey == nil {
		return nil, errors.New("cloudfront signer: key pair id and private key are required")
	}
	return &Signer{base: strings.TrimSuffix(o.BaseURL, "/"), strip: o.StripPrefix, signer: sign.NewURLSigner(o.KeyPairID, o.PrivateKey)}, nil
}

// LoadPrivateKey reads a PEM RSA private key (PKCS#1 or PKCS#8).
func LoadPrivateKey(file string) (crypto.Signer, error) {
	k, err := sign.LoadPEMPrivKeyFile(file)
	if err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("cloudfront signer: private key %s: %w", file, err)
}

// ObjectURL is the unsigned CDN URL of an object key.
func ObjectURL(base, strip, key string) string {
	key = strings.TrimPrefix(key, strip)
	return base + "/" + (&url.URL{Path: key}).EscapedPath()
}

// SignBlob implements registry.Signer: a canned-policy URL valid until
// expires (to the second, rounded down).
func (s *Signer) SignBlob(_ context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	if b.Key == "" {
		return registry.SignedURL{}, errors.New("cloudfront signer: blob has no object key")
	}
	exp := expires.Truncate(time.Second)
	u, err := s.signer.Sign(ObjectURL(s.base, s.strip, b.Key), exp)
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("cloudfront signer: %w", err)
	}
	return registry.SignedURL{URL: u, Expires: exp}, nil
}

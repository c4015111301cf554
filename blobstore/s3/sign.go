package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wharf-registry/wharf/registry"
)

// SigningGeneration implements registry.RotatingSigner: it identifies the
// credentials SignBlob signs with right now, so the registry's signature
// cache never serves a URL signed with credentials that have rotated.
func (s *Store) SigningGeneration(ctx context.Context) (string, error) {
	c, err := s.creds.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	return credGeneration(c), nil
}

func credGeneration(c aws.Credentials) string {
	h := sha256.New()
	h.Write([]byte(c.AccessKeyID))
	h.Write([]byte{0})
	h.Write([]byte(c.SessionToken))
	if c.CanExpire {
		h.Write([]byte(strconv.FormatInt(c.Expires.UnixNano(), 10)))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// SignBlob implements registry.Signer with a SigV4 pre-signed GET of the
// blob's object, for Options.PublicEndpoint when set (the signature
// covers the host). The URL expires at the requested time, or earlier when
// S3's 7-day limit or the signing credentials' own expiry come first: a
// URL signed with temporary credentials stops working when they do.
func (s *Store) SignBlob(ctx context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	if err := s.checkKey(b.Key); err != nil {
		return registry.SignedURL{}, err
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("s3 store: credentials: %w", err)
	}
	now := s.now()
	if creds.CanExpire && creds.Expires.Before(expires) {
		expires = creds.Expires
	}
	// X-Amz-Date has one-second resolution and may be taken a moment
	// after now: leave a second of margin, then read the true expiry back
	// from the URL.
	life := expires.Sub(now).Truncate(time.Second) - time.Second
	life = min(life, MaxPresignExpiry)
	if life < time.Second {
		return registry.SignedURL{}, fmt.Errorf("s3 store: signing credentials expire at %s", creds.Expires.Format(time.RFC3339))
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &b.Key}
	if s.opts.ResponseContentType != "" {
		in.ResponseContentType = &s.opts.ResponseContentType
	}
	if s.opts.ResponseContentDisposition != "" {
		in.ResponseContentDisposition = aws.String(strings.ReplaceAll(s.opts.ResponseContentDisposition, "{digest}", b.Digest.Encoded()))
	}
	pinned := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	req, err := s.presign.PresignGetObject(ctx, in, func(po *s3.PresignOptions) {
		po.Expires = life
		po.ClientOptions = append(po.ClientOptions, func(o *s3.Options) { o.Credentials = pinned })
	})
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("s3 store: presign: %w", err)
	}
	u, err := url.Parse(req.URL)
	if err != nil {
		return registry.SignedURL{}, err
	}
	signedAt, err := time.Parse("20060102T150405Z", u.Query().Get("X-Amz-Date"))
	if err != nil {
		return registry.SignedURL{}, fmt.Errorf("s3 store: presigned URL without X-Amz-Date: %w", err)
	}
	return registry.SignedURL{URL: req.URL, Expires: signedAt.Add(life)}, nil
}

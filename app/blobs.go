package app

import (
	"context"
	"fmt"

	"github.com/wharf-registry/wharf/blobstore/filesystem"
	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/signer/cdnhmac"
	"github.com/wharf-registry/wharf/signer/cloudfront"
)

// OpenBlobStore builds the blob store storage.driver names; where says
// where blobs go, for the startup log line.
func OpenBlobStore(ctx context.Context, cfg config.Config) (blobs registry.BlobStore, where string, err error) {
	switch cfg.Storage.Driver {
	case config.StorageS3:
		c := cfg.Storage.S3
		st, err := s3.New(ctx, cfg.S3Options())
		if err != nil {
			return nil, "", err
		}
		return st, "s3://" + c.Bucket + "/" + c.Prefix, nil
	default:
		root := BlobRoot(cfg)
		fs, err := filesystem.New(root)
		if err != nil {
			return nil, "", err
		}
		return fs, root, nil
	}
}

// urlSigner builds the signer signing.signer names; local is the
// registry's own HMAC signer for its signed-download route (with the s3
// store that route streams from the bucket).
func urlSigner(cfg config.Config, blobs registry.BlobStore, local registry.Signer) (registry.Signer, error) {
	switch cfg.Signing.Signer {
	case config.SignerS3:
		st, ok := blobs.(*s3.Store)
		if !ok {
			return nil, fmt.Errorf("signing.signer s3 needs storage.driver s3")
		}
		return st, nil
	case config.SignerCloudFront:
		c := cfg.Signing.CloudFront
		key, err := cloudfront.LoadPrivateKey(c.PrivateKeyFile)
		if err != nil {
			return nil, err
		}
		return cloudfront.New(cloudfront.Options{BaseURL: c.BaseURL, KeyPairID: c.KeyPairID, PrivateKey: key, StripPrefix: c.StripPrefix})
	case config.SignerCDNHMAC:
		c := cfg.Signing.CDNHMAC
		return cdnhmac.New(cdnhmac.Options{BaseURL: c.BaseURL, Secret: []byte(c.Secret), KeyID: c.KeyID,
			ExpiresParam: c.ExpiresParam, SignatureParam: c.SignatureParam, KeyIDParam: c.KeyIDParam, StripPrefix: c.StripPrefix})
	default:
		return local, nil
	}
}

package config

import (
	"fmt"
	"slices"
	"strings"
)

// The settings that choose between a few named modes are typed, so the
// code that acts on them compares constants, not strings, and each is
// validated in one place against its list (oneOf).

// StorageDriver is storage.driver.
type StorageDriver string

// The blob stores.
const (
	StorageFilesystem StorageDriver = "filesystem"
	StorageS3         StorageDriver = "s3"
)

// MetadataDriver is metadata.driver.
type MetadataDriver string

// The metadata stores.
const (
	MetadataSQLite   MetadataDriver = "sqlite"
	MetadataPostgres MetadataDriver = "postgres"
)

// AuthMode is auth.mode.
type AuthMode string

// The authentication modes.
const (
	AuthNone  AuthMode = "none"
	AuthBasic AuthMode = "basic"
	AuthToken AuthMode = "token"
)

// SignerKind is signing.signer.
type SignerKind string

// The URL signers ("" is local).
const (
	SignerLocal      SignerKind = "local"
	SignerS3         SignerKind = "s3"
	SignerCloudFront SignerKind = "cloudfront"
	SignerCDNHMAC    SignerKind = "cdn_hmac"
)

// UntaggedPolicy is gc.untagged.
type UntaggedPolicy string

// What garbage collection does with untagged manifests.
const (
	UntaggedKeep   UntaggedPolicy = "keep"
	UntaggedDelete UntaggedPolicy = "delete"
)

// oneOf refuses a value of key that is not one of allowed, listing them.
func oneOf[T ~string](key string, v T, allowed ...T) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	want := names[0]
	if n := len(names); n > 1 {
		want = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
	}
	return fmt.Errorf("%s %q: want %s", key, v, want)
}

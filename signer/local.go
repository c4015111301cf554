// Package signer makes the signed, expiring blob URLs of the embedded
// shape: HMAC-SHA256 over the digest, the expiry and the key id, pointing at
// Wharf's own download route. The signature is the credential: the route
// needs nothing else, so clients that follow a redirect without their
// Authorization header (as the OCI spec asks) still get the bytes.
package signer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/atomicfile"
	"github.com/wharf-registry/wharf/registry"
)

// DownloadPath is the route signed URLs point at; the digest follows it.
const DownloadPath = "/_wharf/blobs/"

// Query parameters of a signed URL.
const (
	ParamExpires   = "expires"
	ParamKeyID     = "kid"
	ParamSignature = "sig"
)

// Key is one HMAC key. Secrets are at least 32 bytes.
type Key struct {
	ID     string `json:"id" yaml:"id"`
	Secret []byte `json:"secret" yaml:"secret"`
}

// MinSecretBytes is the shortest secret accepted.
const MinSecretBytes = 32

// Local signs with one active key and verifies with every accepted key,
// so keys rotate without breaking URLs already handed out: add the new key,
// make it active, drop the old one once its longest URL has expired.
type Local struct {
	active Key
	keys   map[string][]byte
}

var _ registry.Signer = (*Local)(nil)

// NewLocal returns a signer that signs with active and also accepts the
// other keys.
func NewLocal(active Key, accepted ...Key) (*Local, error) {
	l := &Local{active: active, keys: map[string][]byte{}}
	for _, k := range append([]Key{active}, accepted...) {
		if k.ID == "" {
			return nil, errors.New("signer: a key has an empty id")
		}
		if len(k.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("signer: key %q is %d bytes; at least %d are needed", k.ID, len(k.Secret), MinSecretBytes)
		}
		if prev, dup := l.keys[k.ID]; dup && !hmac.Equal(prev, k.Secret) {
			return nil, fmt.Errorf("signer: two different keys share the id %q", k.ID)
		}
		l.keys[k.ID] = k.Secret
	}
	return l, nil
}

// SignBlob implements registry.Signer. The URL is relative to the
// registry's public URL (the server makes it absolute).
func (l *Local) SignBlob(_ context.Context, b registry.BlobInfo, expires time.Time) (registry.SignedURL, error) {
	exp := strconv.FormatInt(expires.Unix(), 10)
	sig := mac(l.active.Secret, b.Digest, exp, l.active.ID)
	q := url.Values{ParamExpires: {exp}, ParamKeyID: {l.active.ID}, ParamSignature: {sig}}
	return registry.SignedURL{
		URL:     DownloadPath + b.Digest.String() + "?" + q.Encode(),
		Expires: time.Unix(expires.Unix(), 0).UTC(),
	}, nil
}

func mac(secret []byte, d digest.Digest, expires, kid string) string {
	h := hmac.New(sha256.New, secret)
	// Domain-separated and unambiguous: no field can contain '\n'.
	h.Write([]byte("wharf-blob-url-v1\n" + d.String() + "\n" + expires + "\n" + kid))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Errors of Verify; all are answered 403.
var (
	ErrMissing = errors.New("the URL is not signed")
	ErrExpired = errors.New("the URL has expired")
	ErrInvalid = errors.New("the URL's signature is not valid")
)

// Verify checks a signed URL's query for digest d at time now. It checks
// the MAC in constant time before anything else looks at the blob.
func (l *Local) Verify(d digest.Digest, q url.Values, now time.Time) error {
	exp, kid, sig := q.Get(ParamExpires), q.Get(ParamKeyID), q.Get(ParamSignature)
	if exp == "" || kid == "" || sig == "" {
		return ErrMissing
	}
	secret, ok := l.keys[kid]
	if !ok {
		return ErrInvalid
	}
	want := mac(secret, d, exp, kid)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return ErrInvalid
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrInvalid
	}
	if now.Unix() >= t {
		return ErrExpired
	}
	return nil
}

// keyFile is the on-disk form of generated keys.
type keyFile struct {
	Active string `json:"active"`
	Keys   []Key  `json:"keys"`
}

// LoadOrCreateKeys reads the keys at path, creating the file with one fresh
// random key on first start. The file is private (0600): its secrets mint
// download URLs for every blob.
func LoadOrCreateKeys(path string) (active Key, all []Key, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := Key{ID: time.Now().UTC().Format("20060102") + "-" + randomHex(4), Secret: make([]byte, 32)}
		if _, err := rand.Read(k.Secret); err != nil {
			return Key{}, nil, err
		}
		kf := keyFile{Active: k.ID, Keys: []Key{k}}
		data, err := json.MarshalIndent(kf, "", "  ")
		if err != nil {
			return Key{}, nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return Key{}, nil, err
		}
		// Write a private temporary file, then link it into place: link
		// fails when the file exists, so replicas starting together on a
		// shared volume agree on whichever key was linked first.
		err = atomicfile.WriteFile(path, data, atomicfile.Options{Sync: true, NoReplace: true})
		if atomicfile.IsExist(err) {
			return LoadOrCreateKeys(path)
		}
		if err != nil {
			return Key{}, nil, err
		}
		return k, kf.Keys, nil
	}
	if err != nil {
		return Key{}, nil, err
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return Key{}, nil, fmt.Errorf("signing keys %s: %w", path, err)
	}
	for _, k := range kf.Keys {
		if k.ID == kf.Active {
			return k, kf.Keys, nil
		}
	}
	return Key{}, nil, fmt.Errorf("signing keys %s: active key %q is not in the file", path, kf.Active)
}

// ParseKeys reads keys given in configuration instead of a file:
// "id:base64-secret" entries separated by commas, the first one active.
// Every replica given the same string signs and verifies alike, with no
// file on any replica's disk; rotating is prepending a new key, then
// dropping the old one once its longest URL has expired.
func ParseKeys(spec string) (active Key, all []Key, err error) {
	seen := map[string]bool{}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		// Errors name the entry by position or id, never by its text:
		// it holds a secret.
		id, secret, ok := strings.Cut(entry, ":")
		if !ok || id == "" || strings.ContainsAny(id, " \t&=?#/") {
			return Key{}, nil, fmt.Errorf("signing key #%d: want id:base64-secret (an id without spaces, &, =, ?, # or /)", i+1)
		}
		if seen[id] {
			return Key{}, nil, fmt.Errorf("signing key id %q given twice", id)
		}
		seen[id] = true
		b, err := base64.StdEncoding.DecodeString(secret)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(secret); err != nil {
				return Key{}, nil, fmt.Errorf("signing key %q: secret is not base64", id)
			}
		}
		if len(b) < MinSecretBytes {
			return Key{}, nil, fmt.Errorf("signing key %q: secret has %d bytes, want at least %d (openssl rand -base64 32)", id, len(b), MinSecretBytes)
		}
		all = append(all, Key{ID: id, Secret: b})
	}
	if len(all) == 0 {
		return Key{}, nil, errors.New("no signing keys given")
	}
	return all[0], all, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

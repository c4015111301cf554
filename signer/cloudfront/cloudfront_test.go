package cloudfront_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/signer/cloudfront"
)

// cfDecode undoes CloudFront's URL-safe base64 (+ -> -, = -> _, / -> ~).
func cfDecode(s string) ([]byte, error) {
	r := strings.NewReplacer("-", "+", "_", "=", "~", "/")
	return base64.StdEncoding.DecodeString(r.Replace(s))
}

// TestSignedURLVerifies checks a URL the way CloudFront does: rebuild the
// canned policy from the resource and Expires, verify the RSA-SHA1
// signature with the public key, and check the expiry.
func TestSignedURLVerifies(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cloudfront.New(cloudfront.Options{BaseURL: "https://d111.cloudfront.net/", KeyPairID: "K2JCJMDEHXQW5F", PrivateKey: key, StripPrefix: "wharf/"})
	if err != nil {
		t.Fatal(err)
	}
	asked := time.Now().Add(20*time.Minute + 300*time.Millisecond)
	b := registry.BlobInfo{Digest: digest.FromString("layer"), Size: 5, Key: "wharf/blobs/0c1e0a3d-upload"}
	signed, err := s.SignBlob(t.Context(), b, asked)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "d111.cloudfront.net" || u.Path != "/blobs/0c1e0a3d-upload" {
		t.Fatalf("URL %s: wrong host or path (prefix not stripped?)", signed.URL)
	}
	q := u.Query()
	if q.Get("Key-Pair-Id") != "K2JCJMDEHXQW5F" {
		t.Fatalf("Key-Pair-Id %q", q.Get("Key-Pair-Id"))
	}
	exp, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if exp != signed.Expires.Unix() || signed.Expires.After(asked) || asked.Sub(signed.Expires) > time.Second {
		t.Fatalf("Expires %d, reported %v, asked %v", exp, signed.Expires, asked)
	}
	resource := "https://d111.cloudfront.net/blobs/0c1e0a3d-upload"
	policy := fmt.Sprintf(`{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, resource, exp)
	sig, err := cfDecode(q.Get("Signature"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum([]byte(policy))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, h[:], sig); err != nil {
		t.Fatalf("signature does not verify against the public key: %v", err)
	}
	// A policy for another resource or expiry does not verify.
	for _, bad := range []string{
		fmt.Sprintf(`{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, resource, exp+1),
		fmt.Sprintf(`{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, resource+"x", exp),
	} {
		h := sha1.Sum([]byte(bad))
		if rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, h[:], sig) == nil {
			t.Fatalf("signature verifies a different policy %s", bad)
		}
	}
	// The URL is valid only before Expires.
	if !time.Now().Before(time.Unix(exp, 0)) {
		t.Fatal("URL already expired")
	}
}

func TestNewRejects(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, o := range []cloudfront.Options{
		{BaseURL: "d111.cloudfront.net", KeyPairID: "K", PrivateKey: key},
		{BaseURL: "https://d111.cloudfront.net", PrivateKey: key},
		{BaseURL: "https://d111.cloudfront.net", KeyPairID: "K"},
	} {
		if _, err := cloudfront.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

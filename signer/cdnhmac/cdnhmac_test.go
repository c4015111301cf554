package cdnhmac_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
	"github.com/wharf-registry/wharf/signer/cdnhmac"
)

// TestVerifyLikeACDN recomputes the token the way the CDN edge does.
func TestVerifyLikeACDN(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	s, err := cdnhmac.New(cdnhmac.Options{BaseURL: "https://cdn.example.com/reg", Secret: secret, KeyID: "k1",
		ExpiresParam: "exp", SignatureParam: "verify", KeyIDParam: "key", StripPrefix: "wharf/"})
	if err != nil {
		t.Fatal(err)
	}
	asked := time.Now().Add(time.Hour)
	signed, err := s.SignBlob(t.Context(), registry.BlobInfo{Digest: digest.FromString("x"), Key: "wharf/blobs/abc"}, asked)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "cdn.example.com" || u.EscapedPath() != "/reg/blobs/abc" || u.Query().Get("key") != "k1" {
		t.Fatalf("URL %s", signed.URL)
	}
	exp, _ := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
	if exp != signed.Expires.Unix() || signed.Expires.After(asked) {
		t.Fatalf("exp %d, Expires %v, asked %v", exp, signed.Expires, asked)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(u.EscapedPath() + u.Query().Get("exp")))
	if want := hex.EncodeToString(m.Sum(nil)); u.Query().Get("verify") != want {
		t.Fatalf("signature %s, want %s", u.Query().Get("verify"), want)
	}
	if _, err := cdnhmac.New(cdnhmac.Options{BaseURL: "https://cdn.example.com", Secret: []byte("short")}); err == nil {
		t.Fatal("short secret accepted")
	}
}

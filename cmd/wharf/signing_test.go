package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/signer"
)

// TestSigningKeysFromConfig: with WHARF_SIGNING_KEYS the signed URLs use
// the given keys and no key file is written; after a restart with a new
// key prepended (a rotation), URLs signed with the old key still download
// and new ones carry the new key id.
func TestSigningKeysFromConfig(t *testing.T) {
	secret := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	oldKey, newKey := "k1:"+secret(), "k2:"+secret()
	dataDir := t.TempDir()
	t.Setenv("WHARF_REDIRECT_ENABLED", "true")
	t.Setenv("WHARF_SIGNING_KEYS", oldKey)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signedURL := func(base string, d digest.Digest) *url.URL {
		t.Helper()
		resp, err := noFollow.Get(base + "/v2/keys/app/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("blob GET: %d, want 307", resp.StatusCode)
		}
		u, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	download := func(u *url.URL, want []byte) {
		t.Helper()
		resp := do(t, "GET", u.String(), nil, nil)
		expectStatus(t, resp, http.StatusOK)
		if got, _ := io.ReadAll(resp.Body); !bytes.Equal(got, want) {
			t.Fatalf("download of %s: wrong bytes", u)
		}
	}

	p := startWharf(t, dataDir)
	blob := []byte("signed with configured keys")
	d := digest.FromBytes(blob)
	expectStatus(t, do(t, "POST", p.url+"/v2/keys/app/blobs/uploads/?digest="+d.String(), bytes.NewReader(blob), nil), http.StatusCreated)
	old := signedURL(p.url, d)
	if kid := old.Query().Get(signer.ParamKeyID); kid != "k1" {
		t.Fatalf("kid %q, want k1", kid)
	}
	download(old, blob)
	if _, err := os.Stat(filepath.Join(dataDir, "signing-keys.json")); !os.IsNotExist(err) {
		t.Fatalf("a key file was written with keys in the configuration: %v", err)
	}
	p.kill(t)

	t.Setenv("WHARF_SIGNING_KEYS", newKey+","+oldKey)
	p = startWharf(t, dataDir)
	old.Host = mustParse(t, p.url).Host // the restarted server listens elsewhere
	download(old, blob)
	if kid := signedURL(p.url, d).Query().Get(signer.ParamKeyID); kid != "k2" {
		t.Fatalf("after the rotation: kid %q, want k2", kid)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

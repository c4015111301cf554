package batch

import (
	"encoding/json"
	"testing"
	"time"
)

// TestBodyIsTheWireFormat pins the exact bytes of a small answer: field
// names and order, '&' unescaped, the manifest's data in base64, no
// trailing newline, and an ETag that follows the bytes.
func TestBodyIsTheWireFormat(t *testing.T) {
	r := &Response{
		ManifestDigest: "sha256:aa", ExpiresAt: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), TotalSize: 3,
		Blobs:    []Blob{{Digest: "sha256:bb", Size: 3, MediaType: "application/vnd.oci.image.config.v1+json", Kind: "config", DownloadURL: "https://s/b?x=1&y=2"}},
		Manifest: &Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: "sha256:aa", Size: 2, Data: []byte("{}")},
	}
	body, etag := r.Body()
	const want = `{"manifestDigest":"sha256:aa","expiresAt":"2026-12-02T10:00:00Z","totalSize":3,` +
		`"blobs":[{"digest":"sha256:bb","size":3,"mediaType":"application/vnd.oci.image.config.v1+json","kind":"config","downloadUrl":"https://s/b?x=1&y=2"}],` +
		`"manifest":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":2,"data":"e30="}}`
	if string(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	if len(etag) != 34 || etag[0] != '"' {
		t.Errorf("etag %s", etag)
	}
	var back Response
	if err := json.Unmarshal(body, &back); err != nil || back.Blobs[0].DownloadURL != "https://s/b?x=1&y=2" || string(back.Manifest.Data) != "{}" {
		t.Fatalf("round trip: %v %+v", err, &back)
	}
	other := &Response{ManifestDigest: "sha256:cc"}
	if _, e2 := other.Body(); e2 == etag {
		t.Error("two answers share an ETag")
	}
	if b, _ := other.Body(); string(b) != `{"manifestDigest":"sha256:cc","expiresAt":"0001-01-01T00:00:00Z","totalSize":0,"blobs":null}` {
		t.Errorf("no manifest: %s", b)
	}
}

func TestExpiryLimits(t *testing.T) {
	for d, ok := range map[time.Duration]bool{
		59 * time.Second: false, MinExpiry: true, DefaultExpiry: true, 168 * time.Hour: true, MaxExpiry + time.Second: false,
	} {
		if err := CheckExpiry(d); (err == nil) != ok {
			t.Errorf("CheckExpiry(%s) = %v", d, err)
		}
	}
	if ClampExpiry(time.Second) != MinExpiry || ClampExpiry(30*24*time.Hour) != MaxExpiry || ClampExpiry(time.Hour) != time.Hour {
		t.Error("ClampExpiry")
	}
}

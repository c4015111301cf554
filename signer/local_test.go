package signer

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
)

func key(id string, b byte) Key { return Key{ID: id, Secret: bytes.Repeat([]byte{b}, 32)} }

func sign(t testing.TB, s *Local, d digest.Digest, exp time.Time) url.Values {
	t.Helper()
	u, err := s.SignBlob(context.Background(), registry.BlobInfo{Digest: d}, exp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.URL, DownloadPath+d.String()+"?") {
		t.Fatalf("URL %q does not point at the download route", u.URL)
	}
	if !u.Expires.Equal(time.Unix(exp.Unix(), 0)) {
		t.Fatalf("Expires = %v, want %v", u.Expires, exp)
	}
	parsed, err := url.Parse(u.URL)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Query()
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := digest.FromString("blob")
	s, err := NewLocal(key("k1", 1))
	if err != nil {
		t.Fatal(err)
	}
	q := sign(t, s, d, now.Add(time.Hour))
	if err := s.Verify(d, q, now); err != nil {
		t.Fatalf("fresh URL: %v", err)
	}
	if err := s.Verify(d, q, now.Add(time.Hour-time.Second)); err != nil {
		t.Fatalf("URL a second before expiry: %v", err)
	}
	if err := s.Verify(d, q, now.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("URL at expiry: %v, want ErrExpired", err)
	}
	tamper := func(k, v string) url.Values {
		c := url.Values{}
		for kk, vv := range q {
			c[kk] = append([]string(nil), vv...)
		}
		c.Set(k, v)
		return c
	}
	for name, c := range map[string]struct {
		d    digest.Digest
		q    url.Values
		want error
	}{
		"other digest":    {digest.FromString("other"), q, ErrInvalid},
		"later expiry":    {d, tamper(ParamExpires, strconv.FormatInt(now.Add(48*time.Hour).Unix(), 10)), ErrInvalid},
		"flipped sig":     {d, tamper(ParamSignature, "A"+q.Get(ParamSignature)[1:]), ErrInvalid},
		"unknown key":     {d, tamper(ParamKeyID, "k9"), ErrInvalid},
		"no signature":    {d, tamper(ParamSignature, ""), ErrMissing},
		"no expiry":       {d, tamper(ParamExpires, ""), ErrMissing},
		"non-numeric exp": {d, tamper(ParamExpires, "soon"), ErrInvalid},
		"empty query":     {d, url.Values{}, ErrMissing},
	} {
		if err := s.Verify(c.d, c.q, now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
	}
}

// TestRotation: a URL signed by a retired key still verifies while the key
// is accepted, and fails once it is removed.
func TestRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := digest.FromString("blob")
	old, _ := NewLocal(key("old", 1))
	q := sign(t, old, d, now.Add(time.Hour))

	rotated, err := NewLocal(key("new", 2), key("old", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := rotated.Verify(d, q, now); err != nil {
		t.Fatalf("URL of the retired-but-accepted key: %v", err)
	}
	if got := sign(t, rotated, d, now.Add(time.Hour)).Get(ParamKeyID); got != "new" {
		t.Fatalf("rotated signer signs with %q, want new", got)
	}
	removed, _ := NewLocal(key("new", 2))
	if err := removed.Verify(d, q, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("URL of a removed key: %v, want ErrInvalid", err)
	}
}

func TestNewLocalRejectsBadKeys(t *testing.T) {
	for name, keys := range map[string][]Key{
		"short secret": {{ID: "a", Secret: []byte("short")}},
		"empty id":     {{ID: "", Secret: bytes.Repeat([]byte{1}, 32)}},
		"id clash":     {key("a", 1), key("a", 2)},
	} {
		if _, err := NewLocal(keys[0], keys[1:]...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadOrCreateKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "signing-keys.json")
	k1, all, err := LoadOrCreateKeys(path)
	if err != nil || len(all) != 1 || len(k1.Secret) != 32 {
		t.Fatalf("create: %+v %v", all, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	k2, _, err := LoadOrCreateKeys(path)
	if err != nil || k2.ID != k1.ID || !bytes.Equal(k2.Secret, k1.Secret) {
		t.Fatalf("reload gave another key: %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"active":"missing","keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeys(path); err == nil {
		t.Fatal("a file whose active key is missing was accepted")
	}
}

// BenchmarkSign is the cost of one signature (no cache).
func BenchmarkSign(b *testing.B) {
	s, _ := NewLocal(key("k", 1))
	info := registry.BlobInfo{Digest: digest.FromString("blob")}
	exp := time.Now().Add(time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignBlob(ctx, info, exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s, _ := NewLocal(key("k", 1))
	d := digest.FromString("blob")
	now := time.Now()
	q := sign(b, s, d, now.Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Verify(d, q, now); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseKeys(t *testing.T) {
	s1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	s2 := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 40))
	active, all, err := ParseKeys(" new:" + s1 + " , old:" + s2 + ",")
	if err != nil {
		t.Fatal(err)
	}
	if active.ID != "new" || len(all) != 2 || all[1].ID != "old" || len(all[1].Secret) != 40 {
		t.Fatalf("active %q, all %v", active.ID, all)
	}
	short := base64.StdEncoding.EncodeToString([]byte("sixteen-byte-key"))
	for _, bad := range []string{"", " , ", "nocolon" + s1, ":" + s1, "a b:" + s1, "k:not base64!", "k:" + short, "k:" + s1 + ",k:" + s1} {
		_, _, err := ParseKeys(bad)
		if err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), s1) || strings.Contains(err.Error(), short) {
			t.Errorf("ParseKeys(%q) error shows the secret: %v", bad, err)
		}
	}
}

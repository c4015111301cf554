package oci

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	hex64  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hex128 = hex64 + hex64
)

// wantCode fails the test unless err is an *Error with code.
func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *oci.Error %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %s (%v), want %s", e.Code, err, code)
	}
	if e.Status < 400 || e.Status > 499 {
		t.Fatalf("got status %d for %s, want a 4xx", e.Status, code)
	}
}

// wantValid fails for each input fn refuses.
func wantValid(t *testing.T, name string, fn func(string) error, inputs []string) {
	t.Helper()
	for _, in := range inputs {
		if err := fn(in); err != nil {
			t.Errorf("%s(%q) = %v, want nil", name, in, err)
		}
	}
}

// wantInvalid fails for each input fn accepts or refuses with another code.
func wantInvalid(t *testing.T, name string, fn func(string) error, code Code, inputs []string) {
	t.Helper()
	for _, in := range inputs {
		err := fn(in)
		if err == nil {
			t.Errorf("%s(%q) = nil error, want %s", name, in, code)
			continue
		}
		wantCode(t, err, code)
	}
}

func TestValidateName(t *testing.T) {
	valid := []string{
		"a",
		"0",
		"library/ubuntu",
		"a/b/c/d/e/f/g",
		"my.repo",
		"my_repo",
		"my__repo",
		"my-repo",
		"my---repo",
		"a.b_c__d-e--f",
		"foo/bar.baz/qux-1",
		"123/456",
		"a0/b1/c2",
		"x/manifests/y", // route words are valid components
		"a/blobs/b",
		"tags",
		"blobs/uploads",
		strings.Repeat("a", MaxNameLength),
		strings.Repeat("ab/", 84) + "abc", // 255 chars with many components
	}
	wantValid(t, "ValidateName", ValidateName, valid)
	if n := len(strings.Repeat("ab/", 84) + "abc"); n != MaxNameLength {
		t.Fatalf("test name has %d chars, want %d", n, MaxNameLength)
	}

	invalid := []string{
		"",
		"A",
		"Library/ubuntu",
		"library/Ubuntu",
		"a..b",  // two dots is not a separator
		"a___b", // three underscores
		"a._b",  // mixed separators
		"a-.b",  // mixed separators
		"a_-b",  // mixed separators
		".a",    // leading separator
		"a.",    // trailing separator
		"-a",
		"a-",
		"_a",
		"a_",
		"__a",
		"a__",
		"/a",   // leading slash: empty component
		"a/",   // trailing slash: empty component
		"a//b", // empty component
		"/",
		"a/.b",
		"a/b.",
		"a/-b",
		"a:b",
		"a b",
		"a@b",
		"a+b",
		"a\x00b",
		"ä",
		"a/b/C",
		strings.Repeat("a", MaxNameLength+1),
		strings.Repeat("ab/", 84) + "abcd", // 256 chars
	}
	wantInvalid(t, "ValidateName", ValidateName, CodeNameInvalid, invalid)
}

func TestValidateNameErrorIsTruncated(t *testing.T) {
	err := ValidateName(strings.Repeat("A", 100000))
	wantCode(t, err, CodeNameInvalid)
	if len(err.Error()) > 1000 {
		t.Fatalf("error message is %d bytes; attacker-sized input must be truncated", len(err.Error()))
	}
}

func TestValidateTag(t *testing.T) {
	valid := []string{
		"latest",
		"v1.0.0",
		"1",
		"_",
		"_private",
		"A",
		"UPPER-lower_123.4",
		"a-",
		"a.",
		"a..b",
		"a--b",
		strings.Repeat("t", MaxTagLength),
		"_" + strings.Repeat(".", MaxTagLength-1),
	}
	wantValid(t, "ValidateTag", ValidateTag, valid)
	invalid := []string{
		"",
		".hidden",
		"-dash",
		".",
		"-",
		"a:b",
		"sha256:" + hex64,
		"a/b",
		"a b",
		"a+b",
		"a@b",
		"é",
		"tag\n",
		strings.Repeat("t", MaxTagLength+1),
	}
	wantInvalid(t, "ValidateTag", ValidateTag, CodeTagInvalid, invalid)
}

func TestParseDigest(t *testing.T) {
	valid := []string{
		"sha256:" + hex64,
		"sha512:" + hex128,
		"sha256:" + strings.Repeat("0", 64),
	}
	for _, s := range valid {
		d, err := ParseDigest(s)
		if err != nil {
			t.Errorf("ParseDigest(%q) = %v, want nil", s, err)
			continue
		}
		if d.String() != s {
			t.Errorf("ParseDigest(%q) = %q, want it unchanged", s, d)
		}
	}
	invalid := []string{
		"",
		":",
		"sha256",
		"sha256:",
		":" + hex64,
		hex64,                              // missing algorithm and colon
		"sha256" + hex64,                   // missing colon
		"sha256:" + hex64[:63],             // too short
		"sha256:" + hex64 + "0",            // too long
		"sha256:" + strings.ToUpper(hex64), // uppercase hex
		"sha256:" + hex64[:63] + "g",       // not hex
		"sha256:" + hex128,                 // sha512 length under sha256
		"sha512:" + hex64,                  // sha256 length under sha512
		"SHA256:" + hex64,                  // uppercase algorithm
		"md5:0123456789abcdef0123456789abcdef",
		"sha1:0123456789abcdef0123456789abcdef01234567",
		"sha384:" + hex64 + hex64[:32],                            // known to go-digest, not accepted here
		"blake3:" + hex64,                                         // unknown algorithm
		"sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", // unregistered
		"sha256:" + hex64 + "\n",
		" sha256:" + hex64,
		"sha256::" + hex64,
	}
	wantInvalid(t, "ParseDigest", func(s string) error { _, err := ParseDigest(s); return err }, CodeDigestInvalid, invalid)
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in       string
		tag      string
		dig      digest.Digest
		isDigest bool
	}{
		{in: "latest", tag: "latest"},
		{in: "v1.2.3-rc.1", tag: "v1.2.3-rc.1"},
		{in: "_x", tag: "_x"},
		{in: strings.Repeat("a", MaxTagLength), tag: strings.Repeat("a", MaxTagLength)},
		{in: "sha256:" + hex64, dig: digest.Digest("sha256:" + hex64), isDigest: true},
		{in: "sha512:" + hex128, dig: digest.Digest("sha512:" + hex128), isDigest: true},
	} {
		ref, err := ParseReference(tc.in)
		if err != nil {
			t.Errorf("ParseReference(%q) = %v", tc.in, err)
			continue
		}
		if ref.Tag != tc.tag || ref.Digest != tc.dig || ref.IsDigest() != tc.isDigest {
			t.Errorf("ParseReference(%q) = %+v (IsDigest %v)", tc.in, ref, ref.IsDigest())
		}
		if ref.String() != tc.in {
			t.Errorf("ParseReference(%q).String() = %q", tc.in, ref.String())
		}
	}

	parse := func(s string) error { _, err := ParseReference(s); return err }
	wantInvalid(t, "ParseReference", parse, CodeTagInvalid, []string{
		"",
		".latest",
		"-latest",
		"a/b",
		strings.Repeat("a", MaxTagLength+1),
	})
	// Anything with a colon is a digest, and must be a valid one.
	wantInvalid(t, "ParseReference", parse, CodeDigestInvalid, []string{
		"latest:1",
		":",
		"sha256:" + hex64[:10],
		"sha256:" + strings.ToUpper(hex64),
		"md5:0123456789abcdef0123456789abcdef",
		"sha384:" + hex64 + hex64[:32],
	})
}

func TestErrorIs(t *testing.T) {
	err := Errorf(CodeBlobUnknown, "custom message").WithDetail("x")
	if !errors.Is(err, ErrBlobUnknown) {
		t.Fatal("errors.Is must match on code alone")
	}
	if errors.Is(err, ErrManifestUnknown) {
		t.Fatal("errors.Is matched another code")
	}
	if got := AsError(errors.New("disk on fire")); got.Code != CodeUnknown || got.Status != 500 || strings.Contains(got.Message, "disk") {
		t.Fatalf("AsError of an internal error = %+v; must be a bare UNKNOWN 500", got)
	}
	if NewError(CodeRangeInvalid).Status != 416 || NewError(CodeUnsupported).Status != 405 {
		t.Fatal("unexpected default statuses")
	}
}

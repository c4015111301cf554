package oci

import (
	"strings"

	"github.com/opencontainers/go-digest"

	// Register the hash functions go-digest validates against.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Limits of the name and tag grammar.
const (
	// MaxNameLength bounds a repository name; CNCF Distribution and most
	// clients use the same limit.
	MaxNameLength = 255
	// MaxTagLength is the spec's limit: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
	MaxTagLength = 128
)

// ValidateName reports whether name matches the spec's repository grammar:
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// It is hand-written rather than a regexp because it runs on every request.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return Errorf(CodeNameInvalid, "invalid repository name %q", truncate(name))
	}
	for _, comp := range strings.Split(name, "/") {
		if !validComponent(comp) {
			return Errorf(CodeNameInvalid, "invalid repository name %q", truncate(name))
		}
	}
	return nil
}

func validComponent(c string) bool {
	if c == "" || !isAlnum(c[0]) || !isAlnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if isAlnum(c[i]) {
			i++
			continue
		}
		// A separator run: ".", "_", "__" or one or more "-".
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
		if i >= len(c) || !isAlnum(c[i]) {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') }

// ValidateTag reports whether tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return Errorf(CodeTagInvalid, "invalid tag %q", truncate(tag))
	}
	for i := 0; i < len(tag); i++ {
		b := tag[i]
		ok := (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_' ||
			(i > 0 && (b == '.' || b == '-'))
		if !ok {
			return Errorf(CodeTagInvalid, "invalid tag %q", truncate(tag))
		}
	}
	return nil
}

// ParseDigest parses and validates a digest. Only sha256 and sha512 are
// accepted: they are the algorithms the spec requires registries to know.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil || (d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512) {
		return "", Errorf(CodeDigestInvalid, "invalid digest %q", truncate(s))
	}
	return d, nil
}

// Reference is the <reference> of a manifest URL: a tag or a digest.
type Reference struct {
	Tag    string
	Digest digest.Digest
}

// IsDigest reports whether the reference names a digest.
func (r Reference) IsDigest() bool { return r.Digest != "" }

func (r Reference) String() string {
	if r.IsDigest() {
		return r.Digest.String()
	}
	return r.Tag
}

// ParseReference parses a manifest reference. Anything with a ':' must be a
// valid digest (tags cannot contain ':'); anything else must be a valid tag.
func ParseReference(s string) (Reference, error) {
	if strings.IndexByte(s, ':') >= 0 {
		d, err := ParseDigest(s)
		if err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}

// truncate keeps attacker-sized input out of error messages and logs.
func truncate(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

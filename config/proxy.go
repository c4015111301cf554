package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wharf-registry/wharf/oci"
)

// Proxy configures the pull-through cache (file only: a list).
type Proxy struct {
	Upstreams []Upstream `yaml:"upstreams"`
}

// Upstream is one registry cached under a local prefix.
type Upstream struct {
	// Prefix is the local name's first components: with prefix
	// dockerhub, dockerhub/library/alpine is upstream's library/alpine.
	Prefix string `yaml:"prefix"`
	// URL is the upstream's base URL (https://registry-1.docker.io).
	URL string `yaml:"url"`
	// Username and the password (from PasswordFile, or the environment
	// variable ProxyPasswordEnv(prefix)): Basic and token-service login.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// TagTTL is how long a tag's digest is trusted before a HEAD
	// revalidates it (default 5m; 0 revalidates on every pull).
	TagTTL *time.Duration `yaml:"tag_ttl"`
	// Timeout bounds the wait for upstream's answer (default 30s).
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultTagTTL is an upstream's tag_ttl when none is set.
const DefaultTagTTL = 5 * time.Minute

// ProxyPasswordEnvPrefix starts the variables that hold upstream
// passwords: WHARF_PROXY_PASSWORD_ and the prefix in upper case, every
// character but letters and digits as '_' (dockerhub:
// WHARF_PROXY_PASSWORD_DOCKERHUB).
const ProxyPasswordEnvPrefix = "WHARF_PROXY_PASSWORD_"

// ProxyPasswordEnv is the variable of the upstream with this prefix.
func ProxyPasswordEnv(prefix string) string {
	return ProxyPasswordEnvPrefix + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, prefix)
}

// TTL is the upstream's tag_ttl, defaulted.
func (u Upstream) TTL() time.Duration {
	if u.TagTTL == nil {
		return DefaultTagTTL
	}
	return *u.TagTTL
}

// Password reads the upstream's password: the environment variable
// first, then password_file (its first line); empty without either.
func (u Upstream) Password(getenv func(string) string) (string, error) {
	if p := getenv(ProxyPasswordEnv(u.Prefix)); p != "" {
		return p, nil
	}
	if u.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(u.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("proxy upstream %s: password_file: %w", u.Prefix, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}

func (c Config) validateProxy() []error {
	var errs []error
	seen := map[string]bool{}
	for i, u := range c.Proxy.Upstreams {
		at := fmt.Sprintf("proxy.upstreams[%d]", i)
		if err := oci.ValidateName(u.Prefix); err != nil || u.Prefix == "" {
			errs = append(errs, fmt.Errorf("%s.prefix %q: want a repository name such as dockerhub", at, u.Prefix))
		}
		for p := range seen {
			if p == u.Prefix || strings.HasPrefix(p, u.Prefix+"/") || strings.HasPrefix(u.Prefix, p+"/") {
				errs = append(errs, fmt.Errorf("%s.prefix %q overlaps prefix %q", at, u.Prefix, p))
			}
		}
		seen[u.Prefix] = true
		pu, err := url.Parse(u.URL)
		if err != nil || pu.Host == "" || (pu.Scheme != "https" && pu.Scheme != "http") || (pu.Path != "" && pu.Path != "/") {
			errs = append(errs, fmt.Errorf("%s.url %q: want http(s)://host[:port]", at, u.URL))
		}
		if u.TagTTL != nil && *u.TagTTL < 0 {
			errs = append(errs, fmt.Errorf("%s.tag_ttl must not be negative", at))
		}
		if u.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s.timeout must not be negative", at))
		}
		if u.PasswordFile != "" && u.Username == "" {
			errs = append(errs, fmt.Errorf("%s: password_file without username", at))
		}
	}
	return errs
}

package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/oci"
)

func TestRouter(t *testing.T) {
	hub, _ := New(Options{URL: "https://registry-1.docker.io"})
	ghcr, _ := New(Options{URL: "https://ghcr.io"})
	mine, _ := New(Options{URL: "http://127.0.0.1:5001"})
	route := Router([]Route{{Prefix: "dockerhub", Upstream: hub, TagTTL: time.Minute}, {Prefix: "ghcr", Upstream: ghcr}, {Prefix: "ghcr/team", Upstream: mine}})
	for _, c := range []struct{ repo, upstream, name string }{
		{"dockerhub/library/alpine", hub.Name(), "library/alpine"},
		{"dockerhub/alpine", hub.Name(), "alpine"},
		{"ghcr/org/app", ghcr.Name(), "org/app"},
		{"ghcr/team/app", mine.Name(), "app"}, // the longest prefix wins
		{"dockerhub", "", ""},                 // the prefix itself is no repository
		{"dockerhubx/app", "", ""},
		{"local/app", "", ""},
	} {
		rt, ok := route(c.repo)
		if c.upstream == "" {
			if ok {
				t.Errorf("%s routed to %s", c.repo, rt.Upstream.Name())
			}
			continue
		}
		if !ok || rt.Upstream.Name() != c.upstream || rt.Repo != c.name {
			t.Errorf("%s: %v %+v, want %s %s", c.repo, ok, rt, c.upstream, c.name)
		}
	}
}

// Docker Hub keeps one-word names under library/; other registries do not.
func TestDockerHubLibrary(t *testing.T) {
	for _, c := range []struct{ url, repo, want string }{
		{"https://registry-1.docker.io", "alpine", "registry-1.docker.io/library/alpine:v1"},
		{"https://registry-1.docker.io", "grafana/grafana", "registry-1.docker.io/grafana/grafana:v1"},
		{"https://ghcr.io", "alpine", "ghcr.io/alpine:v1"},
	} {
		u, err := New(Options{URL: c.url})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := u.repoRef(c.repo, refTag("v1"))
		if r.Name() != c.want {
			t.Errorf("%s %s: %s, want %s", c.url, c.repo, r.Name(), c.want)
		}
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "registry-1.docker.io", "ftp://x", "https://x/path", "https://"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {" 120 ", 2 * time.Minute}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(c.v, now); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}

func refTag(tag string) oci.Reference { return oci.Reference{Tag: tag} }

// The pauses an upstream's answers start, and what they cover.
func TestLimits(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	answer := func(status int, h ...string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}
	var l limits
	l.observe(answer(200, "RateLimit-Remaining", "3;w=21600"), now)
	if d := l.wait(now, true); d != 0 {
		t.Fatalf("pulls left: wait %v", d)
	}
	l.observe(answer(429, "Retry-After", "7"), now)
	if d := l.wait(now.Add(2*time.Second), false); d != 5*time.Second {
		t.Errorf("429 Retry-After 7, 2 s later: wait %v, want 5s", d)
	}
	if d := l.wait(now.Add(8*time.Second), true); d != 0 {
		t.Errorf("after Retry-After: wait %v", d)
	}
	var bare limits
	bare.observe(answer(429), now)
	if d := bare.wait(now, false); d != defaultPause {
		t.Errorf("429 without Retry-After: wait %v, want %v", d, defaultPause)
	}
	var hub limits
	hub.observe(answer(200, "RateLimit-Remaining", "0;w=21600"), now)
	if d := hub.wait(now, false); d != 0 {
		t.Errorf("quota used up: a HEAD or blob waits %v, want 0", d)
	}
	if d := hub.wait(now, true); d != exhaustedPause {
		t.Errorf("quota used up: a manifest GET waits %v, want %v", d, exhaustedPause)
	}
	hub.observe(answer(200, "RateLimit-Remaining", "1;w=21600"), now.Add(time.Second))
	if d := hub.wait(now.Add(time.Second), true); d != 0 {
		t.Errorf("a pull left again: a manifest GET waits %v", d)
	}
	var odd limits
	odd.observe(answer(503), now) // no Retry-After: no pause
	odd.observe(answer(200, "RateLimit-Remaining", "lots"), now)
	if d := odd.wait(now, true); d != 0 {
		t.Errorf("503 without Retry-After, unreadable header: wait %v", d)
	}
}

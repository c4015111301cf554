package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The pauses an upstream's answers impose. While one runs, the cache sends
// nothing of that kind upstream: every client request would otherwise be
// one more request to a registry that already said stop (the request
// storm), and Docker Hub counts them.
const (
	// defaultPause follows a 429 that named no Retry-After.
	defaultPause = 5 * time.Second
	// exhaustedPause follows Docker Hub's "ratelimit-remaining: 0": manifest
	// GETs (what Docker Hub counts) wait this long, or until an answer
	// says some are left again (HEADs, which it does not count, go on and
	// carry the header).
	exhaustedPause = time.Minute
)

// errPaused is the error of a request the cache did not send.
var errPaused = errors.New("not sent: upstream asked the cache to wait")

// limits is what an upstream asked for: no request at all until all, no
// manifest GET until gets.
type limits struct {
	mu   sync.Mutex
	all  time.Time
	gets time.Time
}

// wait is how long a request must still wait (0: send it). manifestGet is
// a request Docker Hub counts against its pull limit.
func (l *limits) wait(now time.Time, manifestGet bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := l.all
	if manifestGet && l.gets.After(until) {
		until = l.gets
	}
	if d := until.Sub(now); d > 0 {
		return d
	}
	return 0
}

// observe takes in an upstream answer: a 429 (or a 503 with Retry-After)
// pauses everything, an exhausted Docker Hub quota pauses manifest GETs,
// a quota with some left lifts that pause.
func (l *limits) observe(resp *http.Response, now time.Time) {
	ra := parseRetryAfter(resp.Header.Get("Retry-After"), now)
	remaining, known := rateLimitRemaining(resp.Header.Get("RateLimit-Remaining"))
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests && ra == 0:
		ra = defaultPause
		fallthrough
	case ra > 0 && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable):
		if t := now.Add(ra); t.After(l.all) {
			l.all = t
		}
	}
	switch {
	case known && remaining == 0:
		if t := now.Add(exhaustedPause); t.After(l.gets) {
			l.gets = t
		}
	case known:
		l.gets = time.Time{}
	}
}

// rateLimitRemaining reads Docker Hub's "ratelimit-remaining: 76;w=21600"
// (the pulls left in the window).
func rateLimitRemaining(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// parseRetryAfter reads seconds or an HTTP date (RFC 9110); 0 when absent
// or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

package service

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter limits failed logins per key (a client address, a user
// name) with one token bucket per key. Only failures take tokens; a key
// whose bucket is empty is refused before its credentials are checked.
// At most max buckets are kept: full buckets (keys that have not failed
// lately) are dropped first, then arbitrary ones.
type loginLimiter struct {
	mu    sync.Mutex
	m     map[string]*rate.Limiter
	max   int
	limit rate.Limit
	burst int
}

func newLoginLimiter(perMinute float64, burst, maxKeys int) *loginLimiter {
	return &loginLimiter{m: map[string]*rate.Limiter{}, max: max(1, maxKeys), limit: rate.Limit(perMinute / 60), burst: max(1, burst)}
}

// wait returns how long until each of keys may fail once more; zero when
// none is blocked.
func (l *loginLimiter) wait(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, k := range keys {
		lim, ok := l.m[k]
		if !ok {
			continue
		}
		if t := lim.TokensAt(now); t < 1 {
			need := time.Duration((1 - t) / float64(l.limit) * float64(time.Second))
			d = max(d, need)
		}
	}
	return d
}

// fail takes a token from each key's bucket.
func (l *loginLimiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		lim, ok := l.m[k]
		if !ok {
			if len(l.m) >= l.max {
				l.evict(now)
			}
			lim = rate.NewLimiter(l.limit, l.burst)
			l.m[k] = lim
		}
		lim.AllowN(now, 1)
	}
}

func (l *loginLimiter) evict(now time.Time) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < l.max {
			return
		}
		delete(l.m, k)
	}
}

func (l *loginLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

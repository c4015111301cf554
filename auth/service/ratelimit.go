package service

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter limits failed logins with token buckets that only failures
// take from, so that guessing is slow and nobody else is locked out:
//
//   - each client address has a bucket; an address whose bucket is empty
//     is refused before any password is checked;
//   - each user has one too, but an empty user bucket (the user is being
//     guessed, maybe from many addresses) refuses only the addresses that
//     failed for that user lately (a bucket of one per address and user,
//     refilled in the time the user's bucket takes to refill): from any
//     other address the right password still works, and a wrong one makes
//     that address one of the refused.
//
// Buckets are keyed by a hash of the address and user (the user name is
// the caller's) and at most max are kept: full buckets (keys that have not
// failed lately) are dropped first, then arbitrary ones.
type loginLimiter struct {
	mu    sync.RWMutex // a rate.Limiter locks itself: reads need only RLock
	m     map[[32]byte]*rate.Limiter
	max   int
	limit rate.Limit
	burst int
}

func newLoginLimiter(perMinute float64, burst, maxKeys int) *loginLimiter {
	return &loginLimiter{m: map[[32]byte]*rate.Limiter{}, max: max(1, maxKeys), limit: rate.Limit(perMinute / 60), burst: max(1, burst)}
}

func pairKey(ip, user string) [32]byte { return cacheKey("pair", ip+"\x00"+user) }

// wait returns how long until ip may try a password of user; zero when
// it may now.
func (l *loginLimiter) wait(now time.Time, ip, user string) time.Duration {
	ka, ku := cacheKey("ip", ip), cacheKey("user", user)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if d := l.waitKey(now, ka); d > 0 {
		return d
	}
	du := l.waitKey(now, ku)
	if du == 0 {
		return 0
	}
	if dp := l.waitKey(now, pairKey(ip, user)); dp > 0 {
		return min(du, dp)
	}
	return 0
}

// waitKey is how long until k's bucket holds a token.
func (l *loginLimiter) waitKey(now time.Time, k [32]byte) time.Duration {
	lim, ok := l.m[k]
	if !ok {
		return 0
	}
	t := lim.TokensAt(now)
	if t >= 1 {
		return 0
	}
	return time.Duration((1 - t) / float64(lim.Limit()) * float64(time.Second))
}

// fail records a failed login of user from ip.
func (l *loginLimiter) fail(now time.Time, ip, user string) {
	ka, ku, kp := cacheKey("ip", ip), cacheKey("user", user), pairKey(ip, user)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.take(now, ka, l.limit, l.burst)
	l.take(now, ku, l.limit, l.burst)
	l.take(now, kp, l.limit/rate.Limit(l.burst), 1)
}

func (l *loginLimiter) take(now time.Time, k [32]byte, limit rate.Limit, burst int) {
	lim, ok := l.m[k]
	if !ok {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(limit, burst)
		l.m[k] = lim
	}
	lim.AllowN(now, 1)
}

func (l *loginLimiter) evict(now time.Time) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
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
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.m)
}

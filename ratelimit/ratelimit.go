// Package ratelimit is the registry's request rate limit: one token
// bucket (golang.org/x/time/rate) per action and caller, kept in a bounded
// LRU so that a flood of distinct callers costs bounded memory.
package ratelimit

import (
	"container/list"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rule is the rate of one action: PerSecond requests a second per caller
// after a burst of Burst. PerSecond <= 0 means no limit.
type Rule struct {
	PerSecond float64
	Burst     int
}

// Limiter implements server.Limiter.
type Limiter struct {
	actions map[string]*action
	seed    maphash.Seed
	now     func() time.Time
}

// action is the buckets of one action, sharded to spread lock contention.
type action struct {
	rule   Rule
	shards [shards]shard
}

const shards = 16

type shard struct {
	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // front: most recently used
	max int
}

type entry struct {
	key string
	lim *rate.Limiter
}

// New returns a limiter with a rule per action ("pull", "push", "batch")
// that keeps at most maxKeys callers' buckets (the least recently seen
// are forgotten first, which only ever makes a limit more lenient).
func New(rules map[string]Rule, maxKeys int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if maxKeys <= 0 {
		maxKeys = 10000
	}
	l := &Limiter{actions: map[string]*action{}, seed: maphash.MakeSeed(), now: now}
	per := max(1, maxKeys/shards/max(1, len(rules)))
	for name, r := range rules {
		if r.PerSecond <= 0 {
			continue
		}
		if r.Burst < 1 {
			r.Burst = 1
		}
		a := &action{rule: r}
		for i := range a.shards {
			a.shards[i].m = map[string]*list.Element{}
			a.shards[i].max = per
		}
		l.actions[name] = a
	}
	return l
}

// Enabled reports whether any action is limited.
func (l *Limiter) Enabled() bool { return len(l.actions) > 0 }

// Allow implements server.Limiter: it takes a token from the bucket of
// (action, key) or says how long until one is there.
func (l *Limiter) Allow(act, key string) (bool, time.Duration) {
	a, ok := l.actions[act]
	if !ok {
		return true, 0
	}
	s := &a.shards[maphash.String(l.seed, key)%shards]
	now := l.now()
	s.mu.Lock()
	var lim *rate.Limiter
	if e, ok := s.m[key]; ok {
		s.lru.MoveToFront(e)
		lim = e.Value.(*entry).lim
	} else {
		lim = rate.NewLimiter(rate.Limit(a.rule.PerSecond), a.rule.Burst)
		s.m[key] = s.lru.PushFront(&entry{key: key, lim: lim})
		for s.lru.Len() > s.max {
			old := s.lru.Back()
			s.lru.Remove(old)
			delete(s.m, old.Value.(*entry).key)
		}
	}
	s.mu.Unlock()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	// Refused: how long until one token is there (reserve, then give back).
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	if d <= 0 {
		d = time.Millisecond
	}
	return false, d
}

// Len is the number of (action, caller) buckets kept.
func (l *Limiter) Len() int {
	n := 0
	for _, a := range l.actions {
		for i := range a.shards {
			s := &a.shards[i]
			s.mu.Lock()
			n += s.lru.Len()
			s.mu.Unlock()
		}
	}
	return n
}

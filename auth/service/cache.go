package service

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cacheShards spreads the cache over several locks so concurrent
// requests do not queue on one.
const cacheShards = 16

// cache is a bounded map from a credential's SHA-256 to what verifying it
// established, valid until an expiry. The credential itself is never
// kept. When a shard is full, expired entries go first, then arbitrary
// ones: memory stays bounded whatever clients send.
type cache[V any] struct {
	shards [cacheShards]cacheShard[V]
	max    int // per shard
}

type cacheShard[V any] struct {
	mu sync.RWMutex
	m  map[[32]byte]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v   V
	exp time.Time
}

func newCache[V any](size int) *cache[V] {
	c := &cache[V]{max: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[[32]byte]cacheEntry[V]{}
	}
	return c
}

func cacheKey(kind, credential string) [32]byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(credential))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *cache[V]) get(k [32]byte, now time.Time) (V, bool) {
	s := &c.shards[k[0]%cacheShards]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *cache[V]) put(k [32]byte, v V, exp, now time.Time) {
	s := &c.shards[k[0]%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.max {
		for key, e := range s.m {
			if !now.Before(e.exp) {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) < c.max {
				break
			}
			delete(s.m, key)
		}
	}
	s.m[k] = cacheEntry[V]{v: v, exp: exp}
}

func (c *cache[V]) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

func (c *cache[V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

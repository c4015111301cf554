package service

import (
	"crypto/sha256"
	"time"

	"github.com/wharf-registry/wharf/internal/cache"
)

// DefaultCacheMaxBytes is the memory of each credential cache when none
// is set.
const DefaultCacheMaxBytes = 16 << 20

// credCache maps a credential's SHA-256 to what verifying it established,
// valid until an expiry. The credential itself is never kept. It is
// bounded in bytes (a token's access claim counts), and an entry gives
// its memory back when it expires.
type credCache struct {
	c *cache.Cache[[32]byte, credEntry]
}

type credEntry struct {
	p    principal
	exp  time.Time // on the service's clock
	wall time.Time // exp on the wall clock, when memory is freed
}

func newCredCache(maxBytes int64) *credCache {
	return &credCache{c: cache.NewExpiring(maxBytes,
		func(_ [32]byte, e credEntry) int64 { return 32 + 64 + principalBytes(e.p) },
		func(_ [32]byte, e credEntry) time.Time { return e.wall })}
}

func principalBytes(p principal) int64 {
	n := cache.Strings(p.id.Subject, p.id.Issuer) + 24
	for _, a := range p.id.Access {
		n += cache.Strings(a.Type, a.Name) + cache.Strings(a.Actions...) + 24
	}
	return n
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

func (c *credCache) get(k [32]byte, now time.Time) (principal, bool) {
	e, ok := c.c.Get(k)
	if !ok {
		return principal{}, false
	}
	if !now.Before(e.exp) {
		c.c.Delete(k)
		return principal{}, false
	}
	return e.p, true
}

func (c *credCache) put(k [32]byte, p principal, exp, now time.Time) {
	c.c.Put(k, credEntry{p: p, exp: exp, wall: time.Now().Add(exp.Sub(now))})
}

func (c *credCache) clear() { c.c.Clear() }

func (c *credCache) len() int { return c.c.Len() }

func (c *credCache) bytes() int64 { return c.c.Bytes() }

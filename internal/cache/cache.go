// Package cache is Wharf's one in-memory cache: typed, bounded by the
// bytes its entries hold (never by what a caller asks for), and safe for
// concurrent use. Every cache in the registry and the auth service is one
// of these, so one budget in bytes bounds them all.
//
// It wraps github.com/maypok86/otter/v2 (W-TinyLFU eviction with per-entry
// weights and expiry); the rest of Wharf depends only on this type.
package cache

import (
	"math"
	"time"

	"github.com/maypok86/otter/v2"
)

// EntryOverhead is what the cache itself spends on one entry (its node,
// table slot and policy links), counted on top of what size reports so
// that many small entries are bounded too.
const EntryOverhead = 128

// Cache maps keys to values within a byte budget.
type Cache[K comparable, V any] struct {
	c   *otter.Cache[K, V]
	max int64
}

// New returns a cache holding at most about maxBytes: size(k, v) is the
// bytes an entry keeps alive (its strings, slices and maps; EntryOverhead
// is added to it). An entry larger than the whole budget is not kept.
func New[K comparable, V any](maxBytes int64, size func(K, V) int64) *Cache[K, V] {
	return newCache(maxBytes, size, nil)
}

// NewExpiring is New whose entries are also dropped at expires(k, v):
// memory is given back when an entry ends, not only when space runs out.
func NewExpiring[K comparable, V any](maxBytes int64, size func(K, V) int64, expires func(K, V) time.Time) *Cache[K, V] {
	return newCache(maxBytes, size, expires)
}

func newCache[K comparable, V any](maxBytes int64, size func(K, V) int64, expires func(K, V) time.Time) *Cache[K, V] {
	maxBytes = max(maxBytes, EntryOverhead)
	o := &otter.Options[K, V]{
		MaximumWeight: uint64(maxBytes),
		Weigher: func(k K, v V) uint32 {
			n := size(k, v) + EntryOverhead
			if n > math.MaxUint32 {
				return math.MaxUint32
			}
			return uint32(n)
		},
	}
	if expires != nil {
		o.ExpiryCalculator = otter.ExpiryWritingFunc(func(e otter.Entry[K, V]) time.Duration {
			return max(time.Until(expires(e.Key, e.Value)), time.Nanosecond)
		})
	}
	return &Cache[K, V]{c: otter.Must(o), max: maxBytes}
}

// Get returns the value stored under k.
func (c *Cache[K, V]) Get(k K) (V, bool) { return c.c.GetIfPresent(k) }

// Put stores v under k; beyond the budget the least used entries go.
func (c *Cache[K, V]) Put(k K, v V) { c.c.Set(k, v) }

// Delete drops k.
func (c *Cache[K, V]) Delete(k K) { c.c.Invalidate(k) }

// Clear drops everything.
func (c *Cache[K, V]) Clear() { c.c.InvalidateAll() }

// Len is the number of entries (approximate while writes are in flight).
func (c *Cache[K, V]) Len() int {
	c.c.CleanUp()
	return c.c.EstimatedSize()
}

// Bytes is the budget in use, EntryOverhead included.
func (c *Cache[K, V]) Bytes() int64 {
	c.c.CleanUp()
	return int64(c.c.WeightedSize())
}

// MaxBytes is the budget.
func (c *Cache[K, V]) MaxBytes() int64 { return c.max }

// Strings is the bytes held by strings, for size functions.
func Strings(ss ...string) int64 {
	var n int64
	for _, s := range ss {
		n += int64(len(s)) + 16
	}
	return n
}

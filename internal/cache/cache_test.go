package cache_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/internal/cache"
)

func strSize(k, v string) int64 { return cache.Strings(k, v) }

func TestBoundedByBytes(t *testing.T) {
	const budget = 1 << 20
	c := cache.New[string, string](budget, strSize)
	v := strings.Repeat("v", 10_000)
	for i := range 2_000 { // 20 MB offered
		c.Put(fmt.Sprint(i), v)
	}
	if b := c.Bytes(); b > budget {
		t.Errorf("%d bytes held, budget %d", b, budget)
	}
	if n := c.Len(); n == 0 || n > budget/10_000 {
		t.Errorf("%d entries of 10 KB in a 1 MB budget", n)
	}
	c.Put("k", "x")
	if got, ok := c.Get("k"); !ok || got != "x" {
		t.Errorf("Get(k) = %q, %v", got, ok)
	}
	c.Delete("k")
	if _, ok := c.Get("k"); ok {
		t.Error("deleted entry served")
	}
	c.Clear()
	if n := c.Len(); n != 0 {
		t.Errorf("%d entries after Clear", n)
	}
}

func TestEntryLargerThanBudgetNotKept(t *testing.T) {
	c := cache.New[string, string](1<<10, strSize)
	c.Put("big", strings.Repeat("b", 2<<10))
	if c.Len() != 0 || c.Bytes() > 1<<10 {
		t.Errorf("an entry over the budget is kept: %d entries, %d bytes", c.Len(), c.Bytes())
	}
}

func TestExpiringEntriesGiveMemoryBack(t *testing.T) {
	c := cache.NewExpiring(1<<20, strSize, func(_, v string) time.Time {
		if v == "short" {
			return time.Now().Add(50 * time.Millisecond)
		}
		return time.Now().Add(time.Hour)
	})
	for i := range 100 {
		c.Put(fmt.Sprint(i), "short")
	}
	c.Put("long", "long")
	deadline := time.Now().Add(5 * time.Second)
	for c.Len() > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.Len(); n != 1 {
		t.Errorf("%d entries left after expiry, want 1", n)
	}
	if _, ok := c.Get("long"); !ok {
		t.Error("live entry dropped")
	}
}

func TestConcurrentUse(t *testing.T) {
	c := cache.New[int, string](64<<10, func(_ int, v string) int64 { return cache.Strings(v) })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5_000 {
				k := (i * (g + 1)) % 3_000
				if v, ok := c.Get(k); ok && v != fmt.Sprint(k) {
					t.Errorf("Get(%d) = %q", k, v)
					return
				}
				c.Put(k, fmt.Sprint(k))
				if i%100 == 0 {
					c.Delete(k)
				}
			}
		})
	}
	wg.Wait()
	if b := c.Bytes(); b > 64<<10 {
		t.Errorf("%d bytes held, budget %d", b, 64<<10)
	}
}

// BenchmarkGetHit compares a hit with a sync.Map load, what the
// registry's caches were before.
func BenchmarkGetHit(b *testing.B) {
	const key = "team/app\x00v1"
	c := cache.New[string, string](1<<20, strSize)
	c.Put(key, "manifest")
	var m sync.Map
	m.Store(key, "manifest")
	for name, get := range map[string]func() bool{
		"cache":    func() bool { _, ok := c.Get(key); return ok },
		"sync.Map": func() bool { _, ok := m.Load(key); return ok },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !get() {
						b.Fatal("miss")
					}
				}
			})
		})
	}
}

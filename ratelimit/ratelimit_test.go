package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestAllowAndRetryAfter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(map[string]Rule{"pull": {PerSecond: 2, Burst: 3}}, 100, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("pull", "addr:1.2.3.4"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	ok, after := l.Allow("pull", "addr:1.2.3.4")
	if ok || after <= 0 || after > time.Second {
		t.Fatalf("over the burst: ok=%v after=%v, want refused with 0 < after <= 500ms", ok, after)
	}
	if ok, _ := l.Allow("pull", "addr:5.6.7.8"); !ok {
		t.Fatal("another caller is limited too")
	}
	if ok, _ := l.Allow("push", "addr:1.2.3.4"); !ok {
		t.Fatal("an action without a rule is limited")
	}
	now = now.Add(after)
	if ok, _ := l.Allow("pull", "addr:1.2.3.4"); !ok {
		t.Fatal("refused after waiting Retry-After")
	}
}

func TestBounded(t *testing.T) {
	l := New(map[string]Rule{"pull": {PerSecond: 1, Burst: 1}}, 160, nil)
	for i := 0; i < 10000; i++ {
		l.Allow("pull", fmt.Sprintf("addr:%d", i))
	}
	if n := l.Len(); n > 160 {
		t.Fatalf("%d callers tracked, want at most 160", n)
	}
}

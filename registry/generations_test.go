package registry

import (
	"fmt"
	"strings"
	"testing"
)

// TestGenerationsNeverRepeat: a repository's generation changes on every
// write and never comes back to a value it had (an entry cached under it
// would be served again), also when the bounded counter map is reset.
func TestGenerationsNeverRepeat(t *testing.T) {
	g := &generations{maxBytes: 4 << 10}
	seen := map[uint64]bool{}
	a := g.get("team/a")
	seen[a] = true
	for i := range 1000 {
		g.bump(fmt.Sprintf("other/%d", i)) // fills and resets the map many times
		if i%7 == 0 {
			prev := g.get("team/a")
			g.bump("team/a")
			if g.get("team/a") == prev {
				t.Fatalf("step %d: a write left the generation at %d", i, prev)
			}
		}
		if i%101 == 0 {
			g.bumpAll()
		}
		now := g.get("team/a")
		if now != a {
			if seen[now] {
				t.Fatalf("step %d: team/a is back at generation %d", i, now)
			}
			seen[now] = true
			a = now
		}
	}
	if g.bytes > g.maxBytes {
		t.Errorf("%d bytes of counters, budget %d", g.bytes, g.maxBytes)
	}
}

// TestGenerationReadsRecordNothing: looking up names that do not exist
// (a 1 MB query each) used to keep a counter, and the request line its
// name was cut from, for good.
func TestGenerationReadsRecordNothing(t *testing.T) {
	g := &generations{maxBytes: 1 << 20}
	line := "GET /v2/missing/" + strings.Repeat("x", 1<<20)
	for i := range 100 {
		g.get(line[8 : 20+i%10])
	}
	n := 0
	g.m.Range(func(any, any) bool { n++; return true })
	if n != 0 || g.bytes != 0 {
		t.Errorf("reads left %d counters (%d bytes)", n, g.bytes)
	}
	before := g.get("team/app")
	g.bump("team/app")
	if g.get("team/app") == before {
		t.Error("bump did not change the generation")
	}
	if g.get("team/other") != before {
		t.Error("bump of one repository changed another's")
	}
}

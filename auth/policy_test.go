package auth

import (
	"reflect"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"library/alpine", []string{"library/alpine"}, []string{"library/alpine2", "library", "x/library/alpine"}},
		{"**", []string{"a", "a/b/c"}, nil},
		{"team/**", []string{"team/a", "team/a/b"}, []string{"team", "teamx/a", "other/team/a"}},
		{"team/*", []string{"team/a", "team/app-1"}, []string{"team/a/b", "team", "team/"[:4]}},
		{"*/base", []string{"x/base", "y.z/base"}, []string{"x/y/base", "base"}},
		{"**/base", []string{"x/base", "x/y/base"}, []string{"base", "x/basement"}},
		{"a/**/z", []string{"a/b/z", "a/b/c/z"}, []string{"a/z/y"}},
		{"app-*", []string{"app-1", "app-"}, []string{"app-1/x", "xapp-1"}},
		{"a.b", []string{"a.b"}, []string{"aXb"}}, // '.' is literal
	}
	for _, c := range cases {
		p, err := CompilePattern(c.pattern)
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		for _, n := range c.match {
			if !p.Match(n) {
				t.Errorf("%q should match %q", c.pattern, n)
			}
		}
		for _, n := range c.nomatch {
			if p.Match(n) {
				t.Errorf("%q should not match %q", c.pattern, n)
			}
		}
	}
	for _, bad := range []string{"", "UPPER", "a b", "a/***", "a[b]", "a?"} {
		if _, err := CompilePattern(bad); err == nil {
			t.Errorf("pattern %q: want an error", bad)
		}
	}
}

func testPolicy(t testing.TB) *Policy {
	p, err := CompilePolicy(PolicySpec{
		Admins:        []string{"root"},
		AdminGroups:   []string{"ops"},
		Groups:        map[string][]string{"devs": {"bob", "carol"}, "ops": {"olga"}},
		AnonymousPull: []string{"public/**"},
		Rules: []RuleSpec{
			{Users: []string{"reader"}, Repos: []string{"team/**"}, Actions: []string{"pull"}},
			{Groups: []string{"devs"}, Repos: []string{"team/*"}, Actions: []string{"pull", "push"}},
			{Users: []string{"bob"}, Repos: []string{"team/bob"}, Actions: []string{"*"}},
			{Users: []string{"*"}, Repos: []string{"shared/**"}, Actions: []string{"pull"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyAllows(t *testing.T) {
	p := testPolicy(t)
	cases := []struct {
		who, repo string
		a         Action
		want      bool
	}{
		{"", "public/x", Pull, true},
		{"", "public/x", Push, false},
		{"", "team/a", Pull, false},
		{"reader", "public/a/b", Pull, true}, // authenticated ⊇ anonymous
		{"reader", "team/a/b", Pull, true},
		{"reader", "team/a", Push, false},
		{"bob", "team/a", Push, true},
		{"bob", "team/a/b", Pull, false}, // team/* is one segment
		{"bob", "team/a", Delete, false},
		{"bob", "team/bob", Delete, true},
		{"carol", "team/bob", Delete, false},
		{"carol", "shared/x/y", Pull, true},
		{"nobody", "shared/x", Pull, true},
		{"nobody", "team/a", Pull, false},
		{"root", "anything/at/all", Delete, true},
		{"olga", "x", Push, true},
		{"reader", "x", Action("bogus"), false},
	}
	for _, c := range cases {
		if got := p.Allows(c.who, c.repo, c.a); got != c.want {
			t.Errorf("Allows(%q, %q, %s) = %v, want %v", c.who, c.repo, c.a, got, c.want)
		}
	}
	if !p.IsAdmin("olga") || p.IsAdmin("bob") || p.IsAdmin("") {
		t.Error("IsAdmin wrong")
	}
}

func TestPolicyGrantIntersection(t *testing.T) {
	p := testPolicy(t)
	got := p.Grant("reader", []Access{
		{Type: "repository", Name: "team/a", Actions: []string{"pull", "push"}},
		{Type: "repository", Name: "secret/x", Actions: []string{"pull"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
		{Type: "repository", Name: "public/p", Actions: []string{"*"}},
	})
	want := []Access{
		{Type: "repository", Name: "team/a", Actions: []string{"pull"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
		{Type: "repository", Name: "public/p", Actions: []string{"pull"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Grant = %+v, want %+v", got, want)
	}
	got = p.Grant("root", []Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}, {Type: "repository", Name: "a", Actions: []string{"*"}}})
	want = []Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}, {Type: "repository", Name: "a", Actions: []string{"*"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("admin Grant = %+v, want %+v", got, want)
	}
	if !Covers(want, "a", Delete) || Covers(want, "b", Pull) {
		t.Error("Covers wrong")
	}
}

func TestPolicyErrors(t *testing.T) {
	for name, spec := range map[string]PolicySpec{
		"unknown group":  {Rules: []RuleSpec{{Groups: []string{"nope"}, Repos: []string{"a"}, Actions: []string{"pull"}}}},
		"unknown action": {Rules: []RuleSpec{{Users: []string{"a"}, Repos: []string{"a"}, Actions: []string{"write"}}}},
		"no repos":       {Rules: []RuleSpec{{Users: []string{"a"}, Actions: []string{"pull"}}}},
		"no users":       {Rules: []RuleSpec{{Repos: []string{"a"}, Actions: []string{"pull"}}}},
		"bad pattern":    {AnonymousPull: []string{"A/B"}},
		"bad admin grp":  {AdminGroups: []string{"x"}},
	} {
		if _, err := CompilePolicy(spec); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func BenchmarkPolicyAllows(b *testing.B) {
	p := testPolicy(b)
	for b.Loop() {
		p.Allows("carol", "team/app", Push)
	}
}

package auth

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/wharf-registry/wharf/oci"
)

// PolicySpec is the policy as written in the configuration file:
//
//	auth:
//	  policy:
//	    admins: [alice]              # every action on every repository, and the catalog
//	    admin_groups: [ops]
//	    groups:
//	      devs: [bob, carol]
//	    anonymous_pull: ["public/**"]
//	    rules:
//	      - users: [bob]             # "*" is every authenticated user
//	        groups: [devs]
//	        repos: ["team/*", "shared/**"]
//	        actions: [pull, push]    # pull, push, delete, or "*"
//
// Repository patterns are globs: "*" matches any characters of one path
// segment (not '/'), "**" matches anything, '/' included. A rule grants
// its actions to its users and to the members of its groups, on every
// repository one of its patterns matches; grants add up, nothing denies.
type PolicySpec struct {
	Admins        []string            `yaml:"admins"`
	AdminGroups   []string            `yaml:"admin_groups"`
	Groups        map[string][]string `yaml:"groups"`
	AnonymousPull []string            `yaml:"anonymous_pull"`
	Rules         []RuleSpec          `yaml:"rules"`
}

// RuleSpec is one rule of a PolicySpec.
type RuleSpec struct {
	Users   []string `yaml:"users"`
	Groups  []string `yaml:"groups"`
	Repos   []string `yaml:"repos"`
	Actions []string `yaml:"actions"`
}

// actionSet is a bit set of actions.
type actionSet uint8

const (
	setPull actionSet = 1 << iota
	setPush
	setDelete
	setAll = setPull | setPush | setDelete
)

func actionBit(a Action) actionSet {
	switch a {
	case Pull:
		return setPull
	case Push:
		return setPush
	case Delete:
		return setDelete
	}
	return 0
}

// rule is a compiled rule: patterns and the actions they grant.
type rule struct {
	patterns []Pattern
	actions  actionSet
}

func (r *rule) grants(repo string) actionSet {
	for i := range r.patterns {
		if r.patterns[i].Match(repo) {
			return r.actions
		}
	}
	return 0
}

// Policy is a compiled PolicySpec. It is immutable and safe for
// concurrent use; evaluating it is a map lookup and a few pattern
// matches.
type Policy struct {
	admins        map[string]bool
	byUser        map[string][]*rule // rules naming the user or one of its groups
	authenticated []*rule            // rules for every authenticated user ("*")
	anonymous     []*rule
}

// CompilePolicy checks and compiles a policy.
func CompilePolicy(spec PolicySpec) (*Policy, error) {
	var errs []error
	p := &Policy{admins: map[string]bool{}, byUser: map[string][]*rule{}}
	for g, members := range spec.Groups {
		for _, m := range members {
			if m == "" || m == "*" {
				errs = append(errs, fmt.Errorf("group %q: invalid member %q", g, m))
			}
		}
	}
	members := func(where, g string) []string {
		m, ok := spec.Groups[g]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown group %q", where, g))
		}
		return m
	}
	for _, u := range spec.Admins {
		p.admins[u] = true
	}
	for _, g := range spec.AdminGroups {
		for _, u := range members("admin_groups", g) {
			p.admins[u] = true
		}
	}
	if len(spec.AnonymousPull) > 0 {
		r := &rule{actions: setPull}
		for _, s := range spec.AnonymousPull {
			pat, err := CompilePattern(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("anonymous_pull: %w", err))
			}
			r.patterns = append(r.patterns, pat)
		}
		p.anonymous = append(p.anonymous, r)
	}
	for i, rs := range spec.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		r := &rule{}
		for _, a := range rs.Actions {
			if a == "*" {
				r.actions |= setAll
				continue
			}
			b := actionBit(Action(a))
			if b == 0 {
				errs = append(errs, fmt.Errorf("%s: unknown action %q (want pull, push, delete or *)", where, a))
			}
			r.actions |= b
		}
		if len(rs.Repos) == 0 {
			errs = append(errs, fmt.Errorf("%s: no repos", where))
		}
		for _, s := range rs.Repos {
			pat, err := CompilePattern(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			r.patterns = append(r.patterns, pat)
		}
		if len(rs.Users) == 0 && len(rs.Groups) == 0 {
			errs = append(errs, fmt.Errorf("%s: no users or groups", where))
		}
		users := slices.Clone(rs.Users)
		for _, g := range rs.Groups {
			users = append(users, members(where, g)...)
		}
		for _, u := range users {
			if u == "*" {
				p.authenticated = append(p.authenticated, r)
				continue
			}
			if !slices.Contains(p.byUser[u], r) {
				p.byUser[u] = append(p.byUser[u], r)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("auth policy: %w", errors.Join(errs...))
	}
	return p, nil
}

// IsAdmin reports whether subject has the admin role.
func (p *Policy) IsAdmin(subject string) bool { return subject != "" && p.admins[subject] }

// Allows reports whether subject ("" for anonymous) may do a on repo.
func (p *Policy) Allows(subject, repo string, a Action) bool {
	bit := actionBit(a)
	return bit != 0 && p.actions(subject, repo)&bit != 0
}

// actions is everything subject may do on repo.
func (p *Policy) actions(subject, repo string) actionSet {
	if subject == "" {
		return grants(p.anonymous, repo, 0)
	}
	if p.admins[subject] {
		return setAll
	}
	// An authenticated user may do at least what anonymous may.
	set := grants(p.anonymous, repo, 0)
	set = grants(p.authenticated, repo, set)
	return grants(p.byUser[subject], repo, set)
}

func grants(rules []*rule, repo string, set actionSet) actionSet {
	for _, r := range rules {
		if set|r.actions == set {
			continue // adds nothing
		}
		set |= r.grants(repo)
		if set == setAll {
			break
		}
	}
	return set
}

// Grant returns what of requested the policy gives subject: the
// intersection, in the order asked, dropping entries left with no
// action. A repository name that is not a valid one ("public/../x"
// matches "public/**") is never granted. "registry:catalog:*" is granted
// to every authenticated user: it lets the catalog list what the policy
// lets the user pull (everything for an admin), as it does for Basic
// credentials; a token without it lists only what it covers.
func (p *Policy) Grant(subject string, requested []Access) []Access {
	out := []Access{}
	for _, req := range requested {
		var acts []string
		switch req.Type {
		case "repository":
			if oci.ValidateName(req.Name) != nil {
				continue
			}
			set := p.actions(subject, req.Name)
			for _, a := range req.Actions {
				if a == "*" {
					if set == setAll {
						acts = append(acts, "*")
					} else {
						for _, x := range []Action{Pull, Push, Delete} {
							if set&actionBit(x) != 0 {
								acts = appendUnique(acts, string(x))
							}
						}
					}
				} else if b := actionBit(Action(a)); b != 0 && set&b != 0 {
					acts = appendUnique(acts, a)
				}
			}
		case "registry":
			if req.Name == "catalog" && subject != "" {
				acts = []string{"*"}
			}
		}
		if len(acts) > 0 {
			out = append(out, Access{Type: req.Type, Name: req.Name, Actions: acts})
		}
	}
	return out
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// Pattern is a compiled repository-name glob.
type Pattern struct {
	src    string
	kind   uint8 // patLiteral, patAll, patPrefix, patRegexp
	prefix string
	re     *regexp.Regexp
}

const (
	patLiteral = iota
	patAll
	patPrefix
	patRegexp
)

var patternChars = regexp.MustCompile(`^[a-z0-9._\-/*]+$`)

// CompilePattern compiles a glob: "*" matches any characters except '/',
// "**" matches any characters including '/'; everything else is literal.
// Common shapes ("a/b", "**", "team/**") match without a regexp.
func CompilePattern(s string) (Pattern, error) {
	if s == "" || !patternChars.MatchString(s) || strings.Contains(s, "***") {
		return Pattern{src: s, kind: patLiteral, prefix: "\x00"}, fmt.Errorf("invalid repository pattern %q (lower-case name characters, '/', '*' and '**')", s)
	}
	switch {
	case !strings.Contains(s, "*"):
		return Pattern{src: s, kind: patLiteral, prefix: s}, nil
	case s == "**":
		return Pattern{src: s, kind: patAll}, nil
	case strings.HasSuffix(s, "**") && !strings.Contains(s[:len(s)-2], "*"):
		return Pattern{src: s, kind: patPrefix, prefix: s[:len(s)-2]}, nil
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "**"):
			b.WriteString(".*")
			i += 2
		case s[i] == '*':
			b.WriteString("[^/]*")
			i++
		default:
			j := i
			for j < len(s) && s[j] != '*' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(s[i:j]))
			i = j
		}
	}
	b.WriteString("$")
	return Pattern{src: s, kind: patRegexp, re: regexp.MustCompile(b.String())}, nil
}

// Match reports whether the repository name matches.
func (p *Pattern) Match(name string) bool {
	switch p.kind {
	case patLiteral:
		return name == p.prefix
	case patAll:
		return true
	case patPrefix:
		return strings.HasPrefix(name, p.prefix)
	default:
		return p.re.MatchString(name)
	}
}

// String returns the glob.
func (p *Pattern) String() string { return p.src }

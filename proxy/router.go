package proxy

import (
	"strings"
	"time"

	"github.com/wharf-registry/wharf/registry"
)

// Route is one configured upstream under a local prefix.
type Route struct {
	// Prefix is the first path components of the local names
	// ("dockerhub": dockerhub/library/alpine is upstream's
	// library/alpine).
	Prefix   string
	Upstream registry.Upstream
	TagTTL   time.Duration
}

// Router returns the registry's routing function over routes: the
// repository's upstream and its name there, for names under a prefix
// (longest prefix first). The prefix itself is no repository.
func Router(routes []Route) func(repo string) (registry.ProxyRoute, bool) {
	rs := append([]Route(nil), routes...)
	return func(repo string) (registry.ProxyRoute, bool) {
		var best *Route
		for i := range rs {
			p := rs[i].Prefix
			if strings.HasPrefix(repo, p+"/") && (best == nil || len(p) > len(best.Prefix)) {
				best = &rs[i]
			}
		}
		if best == nil {
			return registry.ProxyRoute{}, false
		}
		return registry.ProxyRoute{Upstream: best.Upstream, Repo: repo[len(best.Prefix)+1:], TagTTL: best.TagTTL}, true
	}
}

package app

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/wharf-registry/wharf/config"
	"github.com/wharf-registry/wharf/proxy"
	"github.com/wharf-registry/wharf/registry"
)

// proxyRoutes builds the pull-through cache's upstreams (nil when none
// is configured) and what closes their connections.
func proxyRoutes(cfg config.Config, log *slog.Logger, version string, wrap func(registry.Upstream) registry.Upstream) (func(string) (registry.ProxyRoute, bool), func(), error) {
	if len(cfg.Proxy.Upstreams) == 0 {
		return nil, func() {}, nil
	}
	var ups []*proxy.Upstream
	closeAll := func() {
		for _, u := range ups {
			u.Close()
		}
	}
	var routes []proxy.Route
	for _, u := range cfg.Proxy.Upstreams {
		pw, err := u.Password(os.Getenv)
		if err != nil {
			return nil, nil, err
		}
		up, err := proxy.New(proxy.Options{URL: u.URL, Username: u.Username, Password: pw, Timeout: u.Timeout,
			UserAgent: "wharf/" + version + " (pull-through cache)"})
		if err != nil {
			return nil, nil, fmt.Errorf("proxy.upstreams %s: %w", u.Prefix, err)
		}
		ups = append(ups, up)
		routes = append(routes, proxy.Route{Prefix: u.Prefix, Upstream: wrap(up), TagTTL: u.TTL()})
		// Never the password, nor whether there is one beyond the user.
		log.Info("pull-through cache", "prefix", u.Prefix, "upstream", up.Name(), "user", u.Username, "tag_ttl", u.TTL())
	}
	return proxy.Router(routes), closeAll, nil
}

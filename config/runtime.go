package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// validateRuntime checks how the server runs: metrics.*, tracing.*, log.access, the HTTP
// limits and the rate limits.
func (c Config) validateRuntime() []error {
	var errs []error
	switch c.Log.Access {
	case "info", "debug", "off":
	default:
		errs = append(errs, fmt.Errorf("log.access %q: want info, debug or off", c.Log.Access))
	}
	if c.Metrics.Pprof && c.Metrics.Addr == "" {
		errs = append(errs, errors.New("metrics.pprof needs metrics.addr: pprof is never served on the main listener"))
	}
	if c.Metrics.Addr != "" && !c.Metrics.Enabled && !c.Metrics.Pprof {
		errs = append(errs, errors.New("metrics.addr is set but metrics.enabled and metrics.pprof are false"))
	}
	h := c.HTTP
	if h.RequestTimeout < 0 || h.TransferIdleTimeout < 0 || h.DrainDelay < 0 {
		errs = append(errs, errors.New("http.request_timeout, http.transfer_idle_timeout and http.drain_delay must not be negative"))
	}
	if _, err := ParseCIDRs(h.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("http.trusted_proxies: %w", err))
	}
	l := c.Limits
	r := l.Rate
	if r.Pull < 0 || r.PullBurst < 0 || r.Push < 0 || r.PushBurst < 0 || r.Batch < 0 || r.BatchBurst < 0 || r.Clients <= 0 {
		errs = append(errs, errors.New("limits.rate.* must not be negative and limits.rate.clients must be positive"))
	}
	if l.ConcurrentUploads < 0 || l.UploadBodyMaxBytes < 0 {
		errs = append(errs, errors.New("limits.concurrent_uploads and limits.upload_body_max_bytes must not be negative"))
	}
	if l.ConcurrentUploadsPerClient < 0 || l.UploadMinRate < 0 || l.UploadMaxDuration < 0 {
		errs = append(errs, errors.New("limits.concurrent_uploads_per_client, limits.upload_min_rate and limits.upload_max_duration must not be negative"))
	}
	if l.UploadMinRate > 0 && l.UploadRateWindow < time.Second {
		errs = append(errs, fmt.Errorf("limits.upload_rate_window %s: want 1s or more", l.UploadRateWindow))
	}
	if t := c.Tracing; t.Enabled {
		if !(t.SampleRatio >= 0 && t.SampleRatio <= 1) {
			errs = append(errs, fmt.Errorf("tracing.sample_ratio %v: want 0 to 1", t.SampleRatio))
		}
		if t.ServiceName == "" {
			errs = append(errs, errors.New("tracing.service_name must not be empty"))
		}
		if t.Endpoint != "" {
			if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("tracing.endpoint %q: want an http:// or https:// URL", t.Endpoint))
			}
		}
	}
	return errs
}

// ParseCIDRs parses a comma-separated list of CIDRs or single addresses
// (http.trusted_proxies).
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

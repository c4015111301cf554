package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/instrument"
	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// Signer counts and times the signatures a registry.Signer makes (each is
// a miss of the registry's signature cache); see instrument.Signer.
func (m *Metrics) Signer(inner registry.Signer) registry.Signer {
	return instrument.Signer(inner, signObserver{dur: m.signDur, ok: m.signs.WithLabelValues("ok"), failed: m.signs.WithLabelValues("error")})
}

// signObserver is the instrument.Observer of the signer seam.
type signObserver struct {
	dur        prometheus.Observer
	ok, failed prometheus.Counter
}

func (s signObserver) Start(ctx context.Context, _ instrument.Op) (context.Context, func(error)) {
	start := time.Now()
	return ctx, func(err error) {
		s.dur.Observe(time.Since(start).Seconds())
		if err != nil {
			s.failed.Inc()
		} else {
			s.ok.Inc()
		}
	}
}

// Authorizer counts an auth.Authorizer's decisions by result; see
// instrument.Authorizer.
func (m *Metrics) Authorizer(inner auth.Authorizer) auth.Authorizer {
	return instrument.Authorizer(inner, authObserver{
		ok: m.authz.WithLabelValues("success"), unauthorized: m.authz.WithLabelValues("unauthorized"),
		denied: m.authz.WithLabelValues("denied"), other: m.authz.WithLabelValues("error")})
}

// authObserver is the instrument.Observer of the auth seam.
type authObserver struct {
	ok, unauthorized, denied, other prometheus.Counter
}

func (a authObserver) Start(ctx context.Context, _ instrument.Op) (context.Context, func(error)) {
	return ctx, func(err error) {
		switch {
		case err == nil:
			a.ok.Inc()
		case oci.AsError(err).Code == oci.CodeUnauthorized:
			a.unauthorized.Inc()
		case oci.AsError(err).Code == oci.CodeDenied:
			a.denied.Inc()
		default:
			a.other.Inc()
		}
	}
}

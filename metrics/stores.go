package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharf-registry/wharf/instrument"
	"github.com/wharf-registry/wharf/registry"
)

// MetadataStore times every call of a registry.MetadataStore (see the
// instrument package for the optional interfaces it keeps).
func (m *Metrics) MetadataStore(inner registry.MetadataStore) registry.MetadataStore {
	return instrument.MetadataStore(inner, m.storeObserver())
}

// BlobStore times every call of a registry.BlobStore and its upload half.
// Readers it opens are handed out unwrapped, so downloads keep sendfile.
func (m *Metrics) BlobStore(inner registry.BlobStore) registry.BlobStore {
	return instrument.BlobStore(inner, m.storeObserver())
}

// op is one instrumented store operation, its series resolved once.
type op struct {
	dur  prometheus.Observer
	errs prometheus.Counter
}

// storeOps is the instrument.Observer that records store latency and
// errors, with every operation's series resolved up front.
type storeOps []op

func (m *Metrics) storeObserver() storeOps {
	all := instrument.Ops()
	s := make(storeOps, len(all))
	for _, o := range all {
		if o.Seam != instrument.SeamMetadata && o.Seam != instrument.SeamBlob {
			continue // the signer and auth seams have series of their own
		}
		s[o.Index] = op{dur: m.storeDur.WithLabelValues(o.Seam, o.Name), errs: m.storeErrs.WithLabelValues(o.Seam, o.Name)}
	}
	return s
}

// Start implements instrument.Observer.
func (s storeOps) Start(ctx context.Context, o instrument.Op) (context.Context, func(error)) {
	rec, start := s[o.Index], time.Now()
	return ctx, func(err error) {
		rec.dur.Observe(time.Since(start).Seconds())
		if err != nil && !instrument.Expected(err) {
			rec.errs.Inc()
		}
	}
}

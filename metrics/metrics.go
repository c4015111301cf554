// Package metrics is Wharf's Prometheus instrumentation: an observer of
// HTTP requests (server.Observer), decorators around the seams the
// registry is built from (metadata store, blob store, signer, authorizer)
// and collectors for the registry's own counters. Every label set is
// bounded: route templates, never paths or repository names.
package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wharf-registry/wharf/server"
)

const namespace = "wharf"

// Metrics holds one process's collectors.
type Metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	bytesIn   *prometheus.CounterVec
	bytesOut  *prometheus.CounterVec
	throttled *prometheus.CounterVec
	batch     prometheus.Counter
	batchN    prometheus.Histogram

	storeDur  *prometheus.HistogramVec
	storeErrs *prometheus.CounterVec
	signs     *prometheus.CounterVec
	signDur   prometheus.Histogram
	authz     *prometheus.CounterVec
	// The pull-through cache: outcomes, upstream requests and bytes.
	proxyEvents, upstreamReqs, upstreamBytes *prometheus.CounterVec

	// Per (route, method, status class) series, resolved once: the hot
	// path costs a few atomic adds, no label hashing.
	series [nRoutes][len(methods)]routeSeries
}

// nRoutes bounds server.Route values (RouteDownload is the last).
const nRoutes = int(server.RouteDownload) + 1

var methods = [...]string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "other"}

func methodIndex(m string) int {
	for i, x := range methods {
		if x == m {
			return i
		}
	}
	return len(methods) - 1
}

type routeSeries struct {
	byClass  [6]atomic.Pointer[prometheus.Counter] // 1xx..5xx, [0] other
	duration atomic.Pointer[prometheus.Observer]
	in, out  atomic.Pointer[prometheus.Counter]
}

// New returns metrics registered in a fresh registry together with the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	f := factory{m.reg}
	m.requests = f.counterVec("http_requests_total", "HTTP requests by route template, method and status class.", "route", "method", "code")
	m.duration = f.histogramVec("http_request_duration_seconds", "HTTP request latency by route template and method.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}, "route", "method")
	m.bytesIn = f.counterVec("http_request_bytes_total", "Request body bytes read, by route template.", "route")
	m.bytesOut = f.counterVec("http_response_bytes_total", "Response body bytes sent, by route template.", "route")
	m.throttled = f.counterVec("http_throttled_total", "Requests answered 429 by the registry: reason rate (rate limit) or uploads (concurrent upload cap).", "reason")
	m.batch = f.counter("batch_requests_total", "Successful calls of the batch endpoint (GET /v2/<name>/manifests/<reference>/blobs).")
	m.batchN = f.histogram("batch_blobs", "Blobs returned per successful batch-endpoint call.", []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000})
	m.storeDur = f.histogramVec("store_operation_duration_seconds", "Metadata and blob store operation latency.",
		[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60}, "store", "op")
	m.storeErrs = f.counterVec("store_operation_errors_total", "Metadata and blob store operations that failed (not-found and lost races are answers, not errors).", "store", "op")
	m.signs = f.counterVec("signer_calls_total", "Blob URL signatures made (signature cache misses reach the signer), by result.", "result")
	m.signDur = f.histogram("signer_call_duration_seconds", "Latency of one blob URL signature.", []float64{.00001, .0001, .001, .01, .1, 1})
	m.proxyEvents = f.counterVec("proxy_cache_total", "Pull-through cache outcomes: hit (served without asking upstream), revalidated (a HEAD confirmed the tag), miss (fetched from upstream), stale (served because upstream failed), coalesced (shared another request's fetch).", "result")
	m.upstreamReqs = f.counterVec("proxy_upstream_requests_total", "Requests the pull-through cache sent upstream, by upstream, operation (head, manifest, blob) and outcome (ok, not_found, 429, 4xx, 5xx, error).", "upstream", "op", "outcome")
	m.upstreamBytes = f.counterVec("proxy_upstream_bytes_total", "Blob bytes received from upstream registries.", "upstream")
	m.authz = f.counterVec("auth_requests_total", "Authorization decisions: result success, unauthorized (401), denied (403) or error.", "result")
	return m
}

// Registry is the Prometheus registry, to add collectors to.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SignatureCache exposes a registry's signature cache counters
// (registry.Registry.SignatureCacheStats).
func (m *Metrics) SignatureCache(stats func() (hits, misses uint64)) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "signature_cache_hits_total",
			Help: "Blob URL signatures served from the signature cache."},
			func() float64 { h, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "signature_cache_misses_total",
			Help: "Blob URL signatures the cache did not have (each one a signer call)."},
			func() float64 { _, n := stats(); return float64(n) }),
	)
}

// UploadsInProgress exposes the number of upload requests being served
// (server.Server.UploadsInProgress).
func (m *Metrics) UploadsInProgress(n func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "uploads_in_progress",
		Help: "Upload requests (POST, PATCH, PUT with blob bytes) being served now."},
		func() float64 { return float64(n()) }))
}

// series is the series in p, resolved by newSeries on first use: label
// lookups are paid once per route, method and class, not per request.
func series[T any](p *atomic.Pointer[T], newSeries func() T) T {
	if v := p.Load(); v != nil {
		return *v
	}
	v := newSeries()
	p.Store(&v)
	return v
}

// ObserveRequest implements server.Observer.
func (m *Metrics) ObserveRequest(o *server.Observation) {
	r := int(o.Route)
	if r < 0 || r >= nRoutes {
		r = int(server.RouteNone)
	}
	if o.Pattern != "" && o.Route == server.RouteNone {
		m.observeSlow(o)
		return
	}
	s := &m.series[r][methodIndex(o.Method)]
	class := o.Status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	route, method := server.Route(r).String(), methods[methodIndex(o.Method)]
	series(&s.byClass[class], func() prometheus.Counter {
		code := "other"
		if class > 0 {
			code = strconv.Itoa(class) + "xx"
		}
		return m.requests.WithLabelValues(route, method, code)
	}).Inc()
	series(&s.duration, func() prometheus.Observer { return m.duration.WithLabelValues(route, method) }).Observe(o.Duration.Seconds())
	if o.BytesIn > 0 {
		series(&s.in, func() prometheus.Counter { return m.bytesIn.WithLabelValues(route) }).Add(float64(o.BytesIn))
	}
	if o.BytesOut > 0 {
		series(&s.out, func() prometheus.Counter { return m.bytesOut.WithLabelValues(route) }).Add(float64(o.BytesOut))
	}
	if o.Throttled != "" {
		m.throttled.WithLabelValues(o.Throttled).Inc()
	}
	if o.Blobs >= 0 && o.Status == http.StatusOK {
		m.batch.Inc()
		m.batchN.Observe(float64(o.Blobs))
	}
}

// observeSlow records a request outside /v2/ (health, metrics, token):
// its route label is its handler pattern, one of a fixed set.
func (m *Metrics) observeSlow(o *server.Observation) {
	method := methods[methodIndex(o.Method)]
	code := "other"
	if c := o.Status / 100; c >= 1 && c <= 5 {
		code = strconv.Itoa(c) + "xx"
	}
	m.requests.WithLabelValues(o.Pattern, method, code).Inc()
	m.duration.WithLabelValues(o.Pattern, method).Observe(o.Duration.Seconds())
	if o.BytesOut > 0 {
		m.bytesOut.WithLabelValues(o.Pattern).Add(float64(o.BytesOut))
	}
}

type factory struct{ reg prometheus.Registerer }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) counter(name, help string) prometheus.Counter {
	v := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(v)
	return v
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	v := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(v)
	return v
}

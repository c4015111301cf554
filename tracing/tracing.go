// Package tracing is Wharf's optional OpenTelemetry tracing: a tracer
// provider exporting spans over OTLP/HTTP, and decorators that make child
// spans of metadata-store and blob-store operations. The server makes one
// span per request (server.Options.Tracer). Nothing here runs when
// tracing is off: no provider, no decorators, no tracer calls.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of Wharf's spans.
const ScopeName = "github.com/wharf-registry/wharf"

// Options configure a Provider.
type Options struct {
	// Endpoint is the OTLP/HTTP collector's base URL
	// ("http://127.0.0.1:4318"); spans are POSTed to <Endpoint>/v1/traces
	// unless the URL already has a path other than "/". Empty: the
	// exporter's defaults (OTEL_EXPORTER_OTLP_* environment variables,
	// else http://localhost:4318).
	Endpoint string
	// SampleRatio is the fraction of new traces recorded (0..1); a
	// request carrying a traceparent follows its sampled flag.
	SampleRatio float64
	// ServiceName and ServiceVersion name the process's resource.
	ServiceName, ServiceVersion string
}

// Provider owns the SDK tracer provider and its exporter.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// New returns a Provider batching spans to o.Endpoint. It does not
// contact the collector.
func New(ctx context.Context, o Options) (*Provider, error) {
	var opts []otlptracehttp.Option
	if o.Endpoint != "" {
		u, err := EndpointURL(o.Endpoint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", o.ServiceName)}
	if o.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", o.ServiceVersion))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
	)
	return &Provider{tp: tp, tracer: tp.Tracer(ScopeName)}, nil
}

// EndpointURL is the URL spans are POSTed to for a tracing.endpoint.
func EndpointURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing.endpoint %q: want an http:// or https:// URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return strings.TrimSpace(u.String()), nil
}

// Tracer is the tracer of Wharf's spans.
func (p *Provider) Tracer() trace.Tracer { return p.tracer }

// TracerProvider is the SDK provider (for other instrumentation).
func (p *Provider) TracerProvider() *sdktrace.TracerProvider { return p.tp }

// ForceFlush exports the spans that have ended.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// Shutdown flushes the remaining spans and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error { return p.tp.Shutdown(ctx) }

// Propagator is the W3C trace-context propagator (traceparent,
// tracestate) the server continues incoming traces with.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

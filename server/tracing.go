package server

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attribute keys of the server span (OpenTelemetry HTTP semantic
// conventions, plus Wharf's own).
const (
	attrMethod    = "http.request.method"
	attrRoute     = "http.route"
	attrStatus    = "http.response.status_code"
	attrRepo      = "wharf.repository"
	attrRequestID = "wharf.request_id"
)

// startSpan begins the server span of r, continuing the trace of an
// incoming traceparent. Its name is set when the route is known (endSpan).
func (s *Server) startSpan(ctx context.Context, r *http.Request) (context.Context, trace.Span) {
	ctx = s.propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	return s.tracer.Start(ctx, methodLabel(r.Method), trace.WithSpanKind(trace.SpanKindServer))
}

// endSpan names the server span by the request's route template (never
// its path: repository names are an attribute), sets its attributes and
// ends it.
func (s *Server) endSpan(sp trace.Span, r *http.Request, rw *responseWriter, info *requestInfo) {
	if !sp.IsRecording() {
		sp.End()
		return
	}
	method, route, status := methodLabel(r.Method), info.routeLabel(), rw.statusCode()
	sp.SetName(method + " " + route)
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs,
		attribute.String(attrMethod, method),
		attribute.String(attrRoute, route),
		attribute.Int(attrStatus, status))
	if info.repo != "" {
		attrs = append(attrs, attribute.String(attrRepo, info.repo))
	}
	if info.id != "" {
		attrs = append(attrs, attribute.String(attrRequestID, info.id))
	}
	sp.SetAttributes(attrs...)
	if status >= 500 {
		sp.SetStatus(codes.Error, http.StatusText(status))
	}
	sp.End()
}

package tracing

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/instrument"
	"github.com/wharf-registry/wharf/registry"
)

// MetadataStore makes a child span ("metadata.<operation>") of every call
// of a registry.MetadataStore made inside a recording span (see the
// instrument package for the optional interfaces it keeps).
func MetadataStore(t trace.Tracer, inner registry.MetadataStore) registry.MetadataStore {
	return instrument.MetadataStore(inner, tracer{t})
}

// BlobStore makes a child span ("blob.<operation>") of every call of a
// registry.BlobStore and its upload half made inside a recording span.
func BlobStore(t trace.Tracer, inner registry.BlobStore) registry.BlobStore {
	return instrument.BlobStore(inner, tracer{t})
}

// tracer is the instrument.Observer that makes the spans.
type tracer struct{ t trace.Tracer }

func noop(error) {}

// Start begins a child span of the span in ctx; when ctx carries no
// recording span (an unsampled request, a background job) no span is made.
func (t tracer) Start(ctx context.Context, op instrument.Op) (context.Context, func(error)) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop
	}
	ctx, sp := t.t.Start(ctx, op.Seam+"."+op.Name, trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func(err error) {
		// A failure, not an answer, marks the span failed.
		if err != nil && !instrument.Expected(err) {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, op.Seam+" error")
		}
		sp.End()
	}
}

// Signer makes a child span ("signer.sign_blob") of every signature.
func Signer(t trace.Tracer, inner registry.Signer) registry.Signer {
	return instrument.Signer(inner, tracer{t})
}

// Authorizer makes a child span ("auth.authorize") of every authorization
// decision; a refusal is an answer, not a failed span.
func Authorizer(t trace.Tracer, inner auth.Authorizer) auth.Authorizer {
	return instrument.Authorizer(inner, tracer{t})
}

package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wharf-registry/wharf/instrument"
)

// TestForceFlushExports: spans reach an OTLP/HTTP collector on ForceFlush;
// a store call outside a recording span makes none.
func TestForceFlushExports(t *testing.T) {
	var spans atomic.Int64
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans.Add(int64(len(ss.Spans)))
			}
		}
	}))
	defer col.Close()
	ctx := context.Background()
	p, err := New(ctx, Options{Endpoint: col.URL, SampleRatio: 1, ServiceName: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	tr := tracer{p.Tracer()}
	op := instrument.Ops()[0]
	if c, done := tr.Start(ctx, op); c != ctx {
		t.Error("a child span without a parent")
	} else {
		done(nil)
	}
	pctx, parent := p.Tracer().Start(ctx, "GET /v2/")
	_, done := tr.Start(pctx, op)
	done(nil)
	parent.End()
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := spans.Load(); n != 2 {
		t.Errorf("collector got %d spans, want 2", n)
	}
}

func TestEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":          "http://127.0.0.1:4318/v1/traces",
		"https://otel.example.com/":      "https://otel.example.com/v1/traces",
		"http://c:4318/custom/v1/traces": "http://c:4318/custom/v1/traces",
	} {
		if got, err := EndpointURL(in); err != nil || got != want {
			t.Errorf("EndpointURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := EndpointURL("127.0.0.1:4318"); err == nil {
		t.Error("accepted a URL without scheme")
	}
}

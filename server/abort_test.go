package server_test

import (
	"io"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/server"
)

// TestAbortedResponseEndsItsSpan: a handler that cuts its response on
// purpose (panic(http.ErrAbortHandler), as net/http wants) still gets its
// server span ended and exported; the connection is dropped.
func TestAbortedResponseEndsItsSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	reg := wharftest.Start(t, wharftest.Options{
		Handlers: map[string]http.Handler{"/abort": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("partial"))
			_ = http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		})},
		Server: func(o *server.Options) { o.Tracer = tp.Tracer("test") },
	})
	resp, err := http.Get(reg.URL + "/abort")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("an aborted response read as complete")
	}
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans ended, want the aborted request's one", n)
	}
}
